"""FinancialReport: one month's income, expenses and what is still owed (``/reports/financial``)."""

from __future__ import annotations

from decimal import Decimal

import attrs

from ._base import Model


@attrs.frozen(kw_only=True)
class FinancialReport(Model):
    """The financial report of one month; every amount is a Decimal.

    ``outstanding_invoices`` is the amount still due on unpaid invoices.
    """

    year: int | None = None
    month: int | None = None
    income: Decimal | None = None
    expenses: Decimal | None = None
    profit: Decimal | None = None
    outstanding_invoices: Decimal | None = None
