"""An in-memory, CloudOnex-compatible API server on aiohttp.web, for tests and demos.

Two styles. ``style="documented"`` follows the vendor's page: ``/api/v2/<resource>[/<id>]``
with Bearer auth or the ``/?api_key=KEY&ng=api/v2/...`` route, the ``{success, data,
message}`` envelope, field errors in ``errors``, ``X-RateLimit-*`` headers with a fixed
window per key, paging and the batch endpoint (see :mod:`._documented`).
``style="shipped"`` answers as the deployed CloudOnex 4.x code does: form bodies only,
singular item paths, bare rows, ``{"error": ...}`` answers at 200, ignored verbs, no
paging and no rate limiting (see :mod:`._shipped`).

Either style can run with or without URL rewriting: without it, ``/api/v2/...`` is the
web server's HTML 404 page and only ``?ng=api/v2/...`` reaches the API. Faults (errors,
dropped connections, stalls, HTML pages, cut or empty bodies) and latency can be
injected, at random or one at a time, and every request is logged.
"""

from __future__ import annotations

import asyncio
import math
import random
import ssl as _ssl
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Literal, Protocol

import attrs
from aiohttp import web

from .._clock import SYSTEM_CLOCK, Clock
from ._documented import DocumentedRoutes, Paging
from ._http import Answer, Incoming, LoggedRequest, http_date
from ._shipped import ShippedRoutes
from ._tables import RESOURCES, Tables

FaultKind = Literal["error", "drop", "stall", "html", "malformed", "empty"]
Style = Literal["documented", "shipped"]

_HTML_PAGE = (
    "<html><head><title>500 Internal Server Error</title></head><body><br />\n"
    "<b>Fatal error</b>: Uncaught PDOException: SQLSTATE[HY000] in "
    "/var/www/system/api/v2.php on line 42</body></html>"
)
_APACHE_404 = (
    '<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\n<html><head>\n'
    "<title>404 Not Found</title>\n</head><body>\n<h1>Not Found</h1>\n"
    "<p>The requested URL was not found on this server.</p>\n<hr>\n"
    "<address>Apache/2.4.57 (Debian) Server at localhost Port 80</address>\n</body></html>\n"
)


@attrs.define
class Faults:
    """Random faults: each request meets at most one, drawn in this order.

    Attributes:
        error_rate: answer ``error_status`` with a JSON error (the shipped style: an empty
            body, as a PHP fatal error gives).
        drop_rate: close the connection without answering.
        stall_rate: wait ``stall_seconds`` before answering (clients time out).
        html_rate: answer an HTML error page with ``html_status``.
        malformed_rate: answer a cut-off JSON body; empty_rate: an empty 200 body.
        after_processing: the share of faults on writes that strike after the record was
            stored, as a PHP host that writes and then fails would.
        seed: for repeatable runs.
    """

    error_rate: float = 0.0
    error_status: int = 500
    drop_rate: float = 0.0
    stall_rate: float = 0.0
    stall_seconds: float = 30.0
    html_rate: float = 0.0
    html_status: int = 500
    malformed_rate: float = 0.0
    empty_rate: float = 0.0
    after_processing: float = 0.5
    seed: int | None = None


@attrs.frozen
class Fault:
    """One fault to inject into the next request (see :meth:`SandboxServer.inject`)."""

    kind: FaultKind
    status: int = 500
    after_processing: bool = False
    retry_after: float | None = None
    method: str | None = None  # only a request with this method meets it


class _Routes(Protocol):
    """What each style provides (see :mod:`._documented` and :mod:`._shipped`)."""

    name: str

    def classify(self, method: str, segments: list[str]) -> tuple[str | None, str]: ...
    async def read_body(self, request: web.Request) -> dict[str, object]: ...
    def unauthorized(self) -> Answer: ...
    def no_route(self) -> Answer: ...
    def server_error(self, status: int) -> Answer: ...
    def seed_row(self, resource: str, record: Mapping[str, object]) -> dict[str, object]: ...
    def route(self, incoming: Incoming) -> Answer: ...


class _Drop(Exception):
    """Close the connection without an answer."""


class SandboxServer:
    """An in-memory CloudOnex API server on loopback.

    Example::

        async with SandboxServer(rate_limit=20, rate_period=2) as sandbox:
            async with Client(base_url=sandbox.base_url, api_key=sandbox.api_key) as c:
                ...

    Args:
        api_key: the one valid key. host, port: where to listen (port 0: a free one).
        style: ``"documented"`` (the vendor page's API) or ``"shipped"`` (the deployed
            4.x code; see the module docstring).
        url_rewriting: whether ``/api/v2/...`` reaches the API (default: on for the
            documented style, off for the shipped one, as on a default install);
            ``/?ng=api/v2/...`` always does.
        display_errors: shipped style: PHP fatal errors become HTML pages at 200, and
            warnings are printed before JSON answers.
        rate_limit, rate_period: the budget per key (documented style); windows are
            aligned to the clock, and ``X-RateLimit-Reset`` is the window's end in epoch
            seconds.
        latency: seconds added to every answer.
        faults: random faults (see :class:`Faults`); :meth:`inject` queues exact ones.
        paging: documented style: ``"meta"`` (data + meta), ``"total_records"`` (meta
            with the record count only), ``"plain"`` (no meta), ``"ignore"`` (every
            record at once), ``"stuck"`` (always page 1).
        default_page_size: records per page when a listing asks for none.
        max_page_size: the most records a page holds, whatever was asked for (a silent
            cap, as many servers have).
        batch: whether ``POST /api/v2/batch/<resource>`` exists; batch_max: its size cap.
        clock: the time source for rate-limit windows and the Date header.
        rate_limit_headers: documented style: whether answers carry ``X-RateLimit-*``
            (the budget is enforced either way).
        strip_authorization: drop the ``Authorization`` header before the API sees it,
            as Apache with CGI/FastCGI does by default (only ``?api_key=`` works then).
        ssl: serve https with this server-side context (``base_url`` says https).
        path_prefix: the site root's path, for CloudOnex installed in a sub-directory
            (``"/crm"``: the API at ``/crm/api/v2/`` and ``/crm/?ng=api/v2/``).
        ng_routes: whether ``?ng=api/v2/...`` at the site root reaches the API (a host
            that hands only ``/api/`` to PHP answers it with its own 404 page).
    """

    def __init__(
        self,
        *,
        api_key: str = "sandbox-key",
        host: str = "127.0.0.1",
        port: int = 0,
        style: Style = "documented",
        url_rewriting: bool | None = None,
        display_errors: bool = False,
        rate_limit: int = 1000,
        rate_period: float = 3600.0,
        latency: float = 0.0,
        faults: Faults | None = None,
        paging: Paging = "meta",
        default_page_size: int = 20,
        max_page_size: int = 1000,
        batch: bool = True,
        batch_max: int = 100,
        clock: Clock | None = None,
        rate_limit_headers: bool = True,
        strip_authorization: bool = False,
        ssl: _ssl.SSLContext | None = None,
        path_prefix: str = "",
        ng_routes: bool = True,
    ) -> None:
        if style not in ("documented", "shipped"):
            raise ValueError(f"style is 'documented' or 'shipped', not {style!r}")
        self.api_key = api_key
        self.host = host
        self.port = port
        self.style: Style = style
        self.url_rewriting = style == "documented" if url_rewriting is None else url_rewriting
        self.display_errors = display_errors
        self.rate_limit = rate_limit
        self.rate_period = rate_period
        self.latency = latency
        self.faults = faults or Faults()
        self.paging: Paging = paging
        self.default_page_size = default_page_size
        self.max_page_size = max_page_size
        self.batch = batch
        self.batch_max = batch_max
        self.clock: Clock = clock or SYSTEM_CLOCK
        self.rate_limit_headers = rate_limit_headers
        self.strip_authorization = strip_authorization
        self.ssl = ssl
        self.path_prefix = "/" + path_prefix.strip("/") if path_prefix.strip("/") else ""
        self.ng_routes = ng_routes
        self.tables = Tables(self.clock)
        self.store = self.tables.store
        self.routes: _Routes = (
            ShippedRoutes(self, self.tables)
            if style == "shipped"
            else DocumentedRoutes(self, self.tables)
        )
        self.requests: list[LoggedRequest] = []
        self._windows: dict[tuple[str, int], int] = {}
        self._injected: deque[Fault] = deque()
        self._rng = random.Random(self.faults.seed)
        self._runner: web.AppRunner | None = None

    # -- lifecycle --------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The site root to give ``Client(base_url=...)``."""
        scheme = "http" if self.ssl is None else "https"
        return f"{scheme}://{self.host}:{self.port}{self.path_prefix}"

    async def start(self) -> None:
        """Start listening."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # No access log: in query-auth mode the URL holds the key.
        self._runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=0.2, handler_cancellation=True
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl)
        await site.start()
        if self.port == 0:
            server = site._server
            assert isinstance(server, asyncio.base_events.Server)
            self.port = server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and drop open connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SandboxServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- what tests use ---------------------------------------------------------------

    def inject(
        self,
        kind: FaultKind,
        *,
        count: int = 1,
        status: int = 500,
        after_processing: bool = False,
        retry_after: float | None = None,
        method: str | None = None,
    ) -> None:
        """Make the next ``count`` requests meet this fault (before any random one).

        With ``method`` (``"DELETE"``), only requests with that method meet it.
        """
        fault = Fault(kind, status, after_processing, retry_after, method)
        self._injected.extend([fault] * count)

    def count(self, action: str | None = None, resource: str | None = None) -> int:
        """Count logged requests, optionally of one action (list, get, create, ...)."""
        return sum(
            1
            for r in self.requests
            if (action is None or r.action == action)
            and (resource is None or r.resource == resource)
        )

    def records(self, resource: str) -> list[dict[str, object]]:
        """Return the stored records of a table, by id.

        The tables are the ten resources, ``users``, ``webhooks`` and (shipped style)
        ``invoice_items``; shipped-style rows carry the vendor's column names.
        """
        return self.tables.rows(resource)

    def seed(self, resource: str, records: Sequence[Mapping[str, object]]) -> list[int]:
        """Store records directly (no request, no validation) and return their ids."""
        return [
            int(str(self.tables.insert(resource, self.routes.seed_row(resource, r))["id"]))
            for r in records
        ]

    # -- the server -------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        route = query.pop("ng", None)
        key = query.pop("api_key", None)  # wins over the header when both are sent
        if key is None and not self.strip_authorization:
            auth = request.headers.get("Authorization", "")
            key = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        method = request.method
        if self.style == "shipped" and "_METHOD" in query:
            method = query.pop("_METHOD").upper()  # the vendor's verb override
        local = self._local_path(request.path)  # None: outside the site
        path = route if route is not None else (local or "/")[1:]
        if self.style == "documented":
            path = path.strip("/")
        log = LoggedRequest(method, "/" + path, query, self.clock.time())
        self.requests.append(log)
        try:
            if (
                local is None
                or (route is None and not self.url_rewriting)
                or (route is not None and (not self.ng_routes or local not in ("/", "/index.php")))
            ):
                # No URL rewriting: /api/v2/... is a file the web server does not have;
                # ?ng= reaches the API only through the site root's index.php (and only
                # if the host hands the root to PHP).
                answer = Answer(404, raw=_APACHE_404.encode(), content_type="text/html")
            else:
                answer = await self._answer(request, method, key, path.split("/"), query, log)
        except _Drop:
            log.status = 0
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError() from None
        log.status = answer.status
        return answer.response(http_date(int(self.clock.time())))

    def _local_path(self, path: str) -> str | None:
        """The request's path below the site root ("/" for the root); None if outside it."""
        prefix = self.path_prefix
        if not prefix:
            return path
        if path == prefix or path.startswith(prefix + "/"):
            return path[len(prefix) :] or "/"
        return None

    async def _answer(
        self,
        request: web.Request,
        method: str,
        key: str | None,
        segments: list[str],
        query: dict[str, str],
        log: LoggedRequest,
    ) -> Answer:
        routes = self.routes
        if segments[:2] != ["api", "v2"] or len(segments) < 3 or "" in segments:
            return routes.no_route()
        if key != self.api_key:
            return routes.unauthorized()
        if self.latency:
            await asyncio.sleep(self.latency)
        headers: dict[str, str] = {}
        if self.style == "documented":
            headers, allowed = self._spend(key)
            if not self.rate_limit_headers:
                headers = {k: v for k, v in headers.items() if not k.startswith("X-RateLimit")}
            if not allowed:
                return Answer(429, _rate_limited(), headers=headers)
        log.resource, log.action = routes.classify(method, segments[2:])
        fault = self._draw_fault(method)
        log.fault = fault.kind if fault else None
        if fault is not None and not fault.after_processing:
            return await self._fail(fault, headers)
        body = await routes.read_body(request)
        answer = routes.route(Incoming(method, segments[2:], query, body, log))
        if fault is not None:
            return await self._fail(fault, headers)
        answer.headers = {**headers, **answer.headers}
        return answer

    def _spend(self, key: str) -> tuple[dict[str, str], bool]:
        now = self.clock.time()
        window = math.floor(now / self.rate_period)
        reset = (window + 1) * self.rate_period
        used = self._windows.get((key, window), 0)
        headers = {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Reset": str(math.ceil(reset)),
        }
        if used >= self.rate_limit:
            headers["X-RateLimit-Remaining"] = "0"
            headers["Retry-After"] = str(max(1, math.ceil(reset - now)))
            return headers, False
        self._windows = {k: v for k, v in self._windows.items() if k[1] >= window}
        self._windows[(key, window)] = used + 1
        headers["X-RateLimit-Remaining"] = str(self.rate_limit - used - 1)
        return headers, True

    def _draw_fault(self, method: str) -> Fault | None:
        for fault in self._injected:
            if fault.method in (None, method):
                self._injected.remove(fault)
                return fault
        f = self.faults
        roll = self._rng.random()
        after = method != "GET" and self._rng.random() < f.after_processing
        for kind, rate in (
            ("error", f.error_rate),
            ("drop", f.drop_rate),
            ("stall", f.stall_rate),
            ("html", f.html_rate),
            ("malformed", f.malformed_rate),
            ("empty", f.empty_rate),
        ):
            if roll < rate:
                status = f.error_status if kind == "error" else f.html_status
                return Fault(kind, status, after)  # type: ignore[arg-type]
            roll -= rate
        return None

    async def _fail(self, fault: Fault, headers: dict[str, str]) -> Answer:
        if fault.kind == "drop":
            raise _Drop
        if fault.kind == "stall":
            await asyncio.sleep(self.faults.stall_seconds)
        if fault.kind == "html":
            return Answer(
                fault.status, raw=_HTML_PAGE.encode(), content_type="text/html", headers=headers
            )
        if fault.kind == "malformed":
            return Answer(200, raw=b'{"success": true, "data": [{"id": 1, "acc', headers=headers)
        if fault.kind == "empty":
            return Answer(200, raw=b"", headers=headers)
        if fault.retry_after is not None:
            headers = {**headers, "Retry-After": str(math.ceil(fault.retry_after))}
        answer = self.routes.server_error(fault.status)
        answer.headers = {**headers, **answer.headers}
        return answer


def _rate_limited() -> dict[str, object]:
    return {"success": False, "errors": {}, "message": "Rate limit exceeded"}


__all__ = [
    "RESOURCES",
    "Fault",
    "FaultKind",
    "Faults",
    "LoggedRequest",
    "Paging",
    "SandboxServer",
    "Style",
]
