"""Context hooks into the request path, for the library's own higher layers."""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable

#: Awaited after the budget grants a request and before it is sent. Bulk jobs set it
#: (per task) to journal a record as sent at the last moment, or to refuse to send
#: once they are stopping.
BEFORE_SEND: contextvars.ContextVar[Callable[[], Awaitable[None]] | None] = contextvars.ContextVar(
    "cloudonex_async_before_send", default=None
)
