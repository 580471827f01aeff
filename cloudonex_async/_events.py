"""Events of the request path, for hooks: what happened, never the API key.

A Client calls each of its ``event_hooks`` with an :class:`Event` as the pipeline goes:
``request_sent`` (the request is handed to the transport), ``response_received`` (an
answer came back: ``status``, ``seconds`` since sending, ``remaining`` budget as
announced), ``retry_scheduled`` (``seconds`` until the next attempt, ``reason``),
``budget_wait_started`` and ``budget_wait_ended`` (``seconds`` waited), and
``rate_limited`` (a 429: ``seconds`` of the pause it asked for, when it said).
"""

from __future__ import annotations

from typing import Literal

import attrs

EventKind = Literal[
    "request_sent",
    "response_received",
    "retry_scheduled",
    "budget_wait_started",
    "budget_wait_ended",
    "rate_limited",
]


@attrs.frozen(kw_only=True)
class Event:
    """One step of one call.

    Attributes:
        kind: what happened (see the module docstring).
        method: the HTTP method.
        path: the API path (``customers/7``), without the key.
        attempt: 1 for the first try, 2 for the first retry, ...
        status: the HTTP status, for ``response_received`` and ``rate_limited``.
        seconds: waited (budget waits), elapsed (responses) or delayed (retries).
        remaining: the budget remaining as the answer announced it, when it did.
        reason: why a retry was scheduled (``"HTTP 503"``, ``"transport"``, ...).
    """

    kind: EventKind
    method: str
    path: str
    attempt: int = 1
    status: int | None = None
    seconds: float | None = None
    remaining: int | None = None
    reason: str | None = None
