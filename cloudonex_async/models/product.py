"""Product: an item or service in the catalog (``/products``)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import attrs

from ._base import Model


@attrs.frozen(kw_only=True)
class Product(Model):
    """A catalog entry; ``tax_rate`` is a percentage."""

    name: str | None = None
    price: Decimal | None = None
    description: str | None = None
    type: str | None = None
    tax_rate: Decimal | None = None
    created_at: datetime | None = None
