"""Purchase: a purchase order from a supplier (``/purchases``)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import attrs

from ._base import Model
from .invoice import InvoiceItem


@attrs.frozen(kw_only=True)
class Purchase(Model):
    """A purchase order, shaped like an invoice plus ``supplier_id``."""

    purchase_number: str | None = None
    supplier_id: int | None = None
    amount: Decimal | None = None
    status: str | None = None
    date: dt.date | None = None
    due_date: dt.date | None = None
    notes: str | None = None
    items: list[InvoiceItem] | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
