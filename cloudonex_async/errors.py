"""The exceptions raised by cloudonex_async, as one tree.

::

    CloudOnexError
    ├── ConfigurationError        bad arguments or misuse (a closed Client, a missing key)
    │   ├── InputChangedError     a resumed job's input is not what its journal recorded
    │   └── RouteNotFoundError    the web server has no API at this URL (an HTML 404 page)
    ├── TransportError            the network failed (connection, timeout, dropped answer)
    │   ├── RequestTimeoutError
    │   │   └── PoolTimeoutError  no concurrency slot came free within max_wait (not sent)
    │   ├── ResponseTooLargeError the answer outgrew max_response_bytes (after decompression)
    │   └── OutcomeUnknownError   a write was sent but its outcome is unknown
    ├── APIError                  the server answered with a failure
    │   ├── ValidationError       400 (or a legacy failure at 200): field errors in ``.errors``
    │   ├── AuthenticationError   401
    │   ├── PermissionDeniedError 403
    │   ├── NotFoundError         404
    │   ├── RateLimitError        429, or the budget is spent and the caller would not wait
    │   └── ServerError           5xx
    ├── ResponseParseError        the answer is not the JSON envelope (HTML, empty, truncated)
    ├── UnsupportedError          this server does not offer (or silently ignores) the call
    ├── CreatedWithoutIdError     a record was created, but the server did not say its id
    ├── PaginationError           a listing does not advance (the server repeats a page)
    ├── BudgetStoreError          the shared budget store (Redis) failed before a request left
    ├── BulkError                 raise_on_error=True: some records failed or are unknown
    └── SyncError                 raise_on_error=True: a sync left records failed or unknown

Every message says what happened and what to do next. No message, ``repr`` or
attribute ever holds the API key: URLs are redacted before they get here.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping

from ._error_base import CloudOnexError
from ._outcomes import BulkResult, SyncResult
from .models import Model

__all__ = [
    "APIError",
    "AuthenticationError",
    "BudgetStoreError",
    "BulkError",
    "CloudOnexError",
    "ConfigurationError",
    "CreatedWithoutIdError",
    "InputChangedError",
    "NotFoundError",
    "OutcomeUnknownError",
    "PaginationError",
    "PermissionDeniedError",
    "PoolTimeoutError",
    "RateLimitError",
    "RequestTimeoutError",
    "ResponseParseError",
    "ResponseTooLargeError",
    "RouteNotFoundError",
    "ServerError",
    "SyncError",
    "TransportError",
    "UnsupportedError",
    "ValidationError",
]


class ConfigurationError(CloudOnexError):
    """The client was given bad arguments or used after it was closed."""


class InputChangedError(ConfigurationError):
    """A resumed job's input differs from what its journal recorded for a record.

    The journal belongs to other input: start the job with a new journal (or none).

    Attributes:
        index: the record's position in the input (counting from 0).
    """

    def __init__(self, message: str, *, index: int) -> None:
        super().__init__(message)
        self.index = index


class RouteNotFoundError(ConfigurationError):
    """The web server answered 404 with a page of its own: the API is not at this URL.

    This is not the API saying "no such record" (that is :class:`NotFoundError`): the
    request never reached CloudOnex. Hosts without URL rewriting serve the API only
    through ``/?ng=api/v2/...``: pass ``route_style="ng"`` (or ``profile="auto"``), and
    check the base URL.

    Attributes:
        status: the HTTP status.
        body_excerpt: the first ~200 characters of the page.
        method: the request's method.
        url: the request's URL, with the API key redacted.
    """

    def __init__(
        self, message: str, *, status: int, body_excerpt: str = "", method: str = "", url: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body_excerpt = body_excerpt
        self.method = method
        self.url = url


class TransportError(CloudOnexError):
    """The request did not get a complete answer (connection failed, timed out or dropped).

    ``request_sent`` is False only when the request certainly never left this
    process (for example: connection refused), so it is safe to send again.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        url: str = "",
        request_sent: bool = True,
        reason: str = "",
    ) -> None:
        super().__init__(message)
        self.method = method
        self.url = url
        self.request_sent = request_sent
        self.reason = reason or message


class RequestTimeoutError(TransportError):
    """No complete answer arrived within the configured timeout."""


class PoolTimeoutError(RequestTimeoutError):
    """All of the Client's ``max_concurrency`` slots stayed busy for the call's ``max_wait``.

    Nothing was sent (``request_sent`` is False): send it again later, or raise
    ``max_concurrency`` or ``max_wait``.
    """


class ResponseTooLargeError(TransportError):
    """The answer grew past ``max_response_bytes`` (counted after decompression).

    Its reading stopped there and the connection was dropped, so memory stays bounded
    whatever the server sends. Ask for less (a smaller ``page_size``), or raise
    ``Client(max_response_bytes=...)`` if such answers are expected. It is not retried.
    """


class OutcomeUnknownError(TransportError):
    """A write was sent but no trustworthy answer came back: the record may or may not exist.

    Look the record up (for example with a filtered ``list``) before sending it again.
    """


class APIError(CloudOnexError):
    """The server answered, and the answer is a failure.

    Attributes:
        status: the HTTP status (200 for legacy servers that report failures in the body).
        errors: field name -> message, as the server sent them (a list of messages is
            kept under numeric keys "0", "1", ...).
        headers: the response headers.
        method: the request's method.
        url: the request's URL, with the API key redacted.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        errors: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        method: str = "",
        url: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.errors: Mapping[str, str] = dict(errors or {})
        self.headers: Mapping[str, str] = dict(headers or {})
        self.method = method
        self.url = url

    def __str__(self) -> str:
        if not self.errors:
            return self.message
        fields = "; ".join(f"{name}: {text}" for name, text in self.errors.items())
        return f"{self.message} ({fields})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, message={self.message!r})"


class ValidationError(APIError):
    """The server rejected the request's data (400); ``errors`` names the fields."""


class AuthenticationError(APIError):
    """The API key was missing or wrong (401)."""


class PermissionDeniedError(APIError):
    """The key is valid but not allowed to do this (403)."""


class NotFoundError(APIError):
    """No such record or endpoint (404)."""


class RateLimitError(APIError):
    """The hourly budget is spent (429), or the caller's ``max_wait`` is shorter than the wait.

    Attributes:
        retry_after: seconds until the budget returns, when known.
        reset_at: when the budget returns (UTC), when known.
        limit: the last budget the server announced, when known.
        remaining: the requests left, as the server last announced them, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 429,
        retry_after: float | None = None,
        reset_at: _dt.datetime | None = None,
        limit: int | None = None,
        remaining: int | None = None,
        errors: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        method: str = "",
        url: str = "",
    ) -> None:
        super().__init__(
            message, status=status, errors=errors, headers=headers, method=method, url=url
        )
        self.retry_after = retry_after
        self.reset_at = reset_at
        self.limit = limit
        self.remaining = remaining


class ServerError(APIError):
    """The server failed (5xx)."""


class ResponseParseError(CloudOnexError):
    """The answer was not what the API promises: not JSON (an HTML error page, an empty or
    cut body), not the shape asked for, or a record holding a value that cannot be read
    exactly (``field`` names it; ``Client(lenient_values=True)`` keeps such values in the
    model's ``extra`` instead).

    ``status`` is the HTTP status and ``body_excerpt`` the first ~200 characters.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        body_excerpt: str = "",
        method: str = "",
        url: str = "",
        field: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body_excerpt = body_excerpt
        self.method = method
        self.url = url
        self.field = field


class UnsupportedError(CloudOnexError):
    """The server does not offer this call, or accepted it and did nothing.

    Raised for a resource the server's build lacks ("Unknown resources requested!"),
    for a verb it answers with an empty 200 while changing nothing (shipped CloudOnex
    4.x code does this for customer updates and deletes), and for calls the client
    knows a profile cannot do. Nothing was changed on the server.

    Attributes:
        resource: the resource path (``"invoices"``).
        operation: what was asked (``"list"``, ``"update"``...).
        profile: the server profile in use.
        method: the request's method (empty if none was sent).
        url: the request's URL, with the API key redacted (empty if none was sent).
    """

    def __init__(
        self,
        message: str,
        *,
        resource: str = "",
        operation: str = "",
        profile: str = "",
        method: str = "",
        url: str = "",
    ) -> None:
        super().__init__(message)
        self.resource = resource
        self.operation = operation
        self.profile = profile
        self.method = method
        self.url = url


class CreatedWithoutIdError(CloudOnexError):
    """The record was created, but the server's answer does not name it.

    Shipped CloudOnex 4.x code answers an invoice create with the id of the invoice's
    last *item*, not of the invoice, so the client cannot return the invoice. Do not
    create it again: find it in the CloudOnex admin (or by a listing, where the server
    has one).

    Attributes:
        resource: the resource path.
        reported_id: the id the server sent (not the record's).
        method: the request's method.
        url: the request's URL, with the API key redacted.
    """

    def __init__(
        self,
        message: str,
        *,
        resource: str = "",
        reported_id: int | None = None,
        method: str = "",
        url: str = "",
    ) -> None:
        super().__init__(message)
        self.resource = resource
        self.reported_id = reported_id
        self.method = method
        self.url = url


class PaginationError(CloudOnexError):
    """A listing stopped advancing: the server sent the same page again."""


class BudgetStoreError(CloudOnexError):
    """The budget store (a ``RedisLimiter``'s Redis) failed before the request was sent.

    Nothing was sent (``request_sent`` is always False), so it is safe to send again
    once the store answers. The store's own exception is the ``__cause__``.
    """

    request_sent = False


class BulkError(CloudOnexError):
    """A bulk job run with ``raise_on_error=True`` had records that failed or are unknown.

    ``result`` holds every record's outcome, the successful ones included.
    """

    def __init__(self, result: BulkResult[Model]) -> None:
        super().__init__(
            f"bulk job incomplete: {result.summary()}; see .result for each record, "
            "fix the failed ones and rerun with the same journal"
        )
        self.result = result


class SyncError(CloudOnexError):
    """A sync run with ``raise_on_error=True`` left records failed or unknown.

    ``result`` holds every record's outcome, the successful ones included.
    """

    def __init__(self, result: SyncResult[Model]) -> None:
        super().__init__(
            f"sync incomplete: {result.summary()}; see .result for each record, fix the "
            "failed ones and run the sync again (it only does what is still needed)"
        )
        self.result = result
