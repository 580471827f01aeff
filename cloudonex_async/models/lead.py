"""Lead: a prospective customer (``/leads``)."""

from __future__ import annotations

from datetime import datetime

import attrs

from ._base import Model


@attrs.frozen(kw_only=True)
class Lead(Model):
    """A sales lead."""

    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    company: str | None = None
    phone: str | None = None
    source: str | None = None
    created_at: datetime | None = None
