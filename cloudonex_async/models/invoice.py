"""Invoice and its line items (``/invoices``)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import attrs

from ._base import Model


@attrs.frozen(kw_only=True)
class InvoiceItem(Model):
    """One line of an invoice, quote or purchase. ``amount`` is the unit price."""

    description: str | None = None
    item_code: str | None = None
    amount: Decimal | None = None
    qty: Decimal | None = None
    taxed: Decimal | None = None


@attrs.frozen(kw_only=True)
class Invoice(Model):
    """An invoice. ``amount`` is the total, in the account's currency."""

    invoice_number: str | None = None
    customer_id: int | None = None
    amount: Decimal | None = None
    status: str | None = None
    date: dt.date | None = None
    due_date: dt.date | None = None
    notes: str | None = None
    items: list[InvoiceItem] | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
