"""Order: a customer order (``/orders``)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import attrs

from ._base import Model


@attrs.frozen(kw_only=True)
class Order(Model):
    """An order. Shipped servers name the customer ``cid``; it is kept in ``extra`` there."""

    ordernum: str | None = None
    customer_id: int | None = None
    status: str | None = None
    amount: Decimal | None = None
    date_added: datetime | None = None
