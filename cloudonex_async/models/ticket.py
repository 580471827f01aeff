"""Ticket: a support ticket (``/tickets``)."""

from __future__ import annotations

from datetime import datetime

import attrs

from ._base import Model


@attrs.frozen(kw_only=True)
class Ticket(Model):
    """A support ticket; ``status`` is Open, Closed or Pending."""

    customer_id: int | None = None
    subject: str | None = None
    message: str | None = None
    department_id: int | None = None
    priority: str | None = None
    status: str | None = None
    created_at: datetime | None = None
