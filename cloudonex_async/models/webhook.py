"""Webhook: a URL the server calls when events happen (``/webhooks``)."""

from __future__ import annotations

from datetime import datetime

import attrs

from ._base import Model


@attrs.frozen(kw_only=True)
class Webhook(Model):
    """A webhook subscription: ``url`` is called for each of ``events``."""

    url: str | None = None
    events: list[str] | None = None
    created_at: datetime | None = None
