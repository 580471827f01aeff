"""Transaction: money in or out of an account (``/transactions``)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import attrs

from ._base import Model


@attrs.frozen(kw_only=True)
class Transaction(Model):
    """A financial transaction; ``type`` is "Income" or "Expense"."""

    type: str | None = None
    account_id: int | None = None
    amount: Decimal | None = None
    category_id: int | None = None
    description: str | None = None
    date: dt.date | None = None
    created_at: dt.datetime | None = None
