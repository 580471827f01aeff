"""Quote: an estimate sent to a customer (``/quotes``)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import attrs

from ._base import Model
from .invoice import InvoiceItem


@attrs.frozen(kw_only=True)
class Quote(Model):
    """A quote; ``valid_until`` is the last day it can be accepted."""

    customer_id: int | None = None
    subject: str | None = None
    amount: Decimal | None = None
    status: str | None = None
    valid_until: dt.date | None = None
    items: list[InvoiceItem] | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
