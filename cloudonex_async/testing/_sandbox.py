"""An in-memory, CloudOnex-compatible API server on aiohttp.web, for tests and demos.

It follows the vendor page: ``/api/v2/<resource>[/<id>]`` with Bearer auth or the
``/?api_key=KEY&ng=api/v2/...`` route, the ``{success, data, message}`` envelope, field
errors in ``errors``, and ``X-RateLimit-*`` headers with a fixed window per key. Where
the page is silent it uses the endpoint reference: ``page``/``limit`` paging with
``meta: {current_page, total_pages, total_records}``, ``search`` and equality filters,
and ``POST /api/v2/batch/<resource>`` (whose answer it defines: one result per input
record, in order, each with ``index`` and either ``id``/``data`` or ``errors``).

Faults (errors, dropped connections, stalls, HTML pages, cut or empty bodies) and
latency can be injected, at random or one at a time, and every request is logged.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import math
import random
import re
from collections import deque
from collections.abc import Collection, Mapping
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from email.utils import formatdate
from http import HTTPStatus
from typing import Literal

import attrs
from aiohttp import web

from .._clock import SYSTEM_CLOCK, Clock

FaultKind = Literal["error", "drop", "stall", "html", "malformed", "empty"]
Paging = Literal["meta", "plain", "ignore", "stuck"]

RESOURCES = (
    "customers",
    "invoices",
    "transactions",
    "quotes",
    "products",
    "orders",
    "leads",
    "suppliers",
    "purchases",
    "tickets",
)
_REQUIRED: Mapping[str, tuple[str, ...]] = {
    "customers": ("account",),
    "invoices": ("customer_id",),
    "transactions": ("type", "amount"),
    "quotes": ("customer_id",),
    "products": ("name",),
    "orders": (),
    "leads": ("first_name",),
    "suppliers": ("account",),
    "purchases": ("supplier_id",),
    "tickets": ("subject",),
}
_MONEY = frozenset({"amount", "price", "tax_rate", "qty", "taxed"})
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_HTML_PAGE = (
    "<html><head><title>500 Internal Server Error</title></head><body><br />\n"
    "<b>Fatal error</b>: Uncaught PDOException: SQLSTATE[HY000] in "
    "/var/www/system/api/v2.php on line 42</body></html>"
)


@attrs.define
class Faults:
    """Random faults: each request meets at most one, drawn in this order.

    Attributes:
        error_rate: answer ``error_status`` with a JSON error.
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


@attrs.define
class LoggedRequest:
    """One request as the sandbox saw it (the API key is never logged).

    It is logged on arrival; ``status`` is filled in when the answer goes out (0 for a
    dropped connection or one still being answered).
    """

    method: str
    path: str
    params: Mapping[str, str]
    at: float
    resource: str | None = None
    action: str = "unknown"
    status: int = 0
    fault: str | None = None
    created: tuple[int, ...] = ()


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
        rate_limit, rate_period: the budget per key; windows are aligned to the clock,
            and ``X-RateLimit-Reset`` is the window's end in epoch seconds.
        latency: seconds added to every answer.
        faults: random faults (see :class:`Faults`); :meth:`inject` queues exact ones.
        paging: ``"meta"`` (documented: data + meta), ``"plain"`` (no meta), ``"ignore"``
            (every record at once, as shipped servers do), ``"stuck"`` (always page 1).
        batch: whether ``POST /api/v2/batch/<resource>`` exists; batch_max: its size cap.
        clock: the time source for rate-limit windows and the Date header.
    """

    def __init__(
        self,
        *,
        api_key: str = "sandbox-key",
        host: str = "127.0.0.1",
        port: int = 0,
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
    ) -> None:
        self.api_key = api_key
        self.host = host
        self.port = port
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
        self.store: dict[str, dict[int, dict[str, object]]] = {r: {} for r in RESOURCES}
        self.requests: list[LoggedRequest] = []
        self._ids = {r: itertools.count(1) for r in RESOURCES}
        self._windows: dict[tuple[str, int], int] = {}
        self._injected: deque[Fault] = deque()
        self._rng = random.Random(self.faults.seed)
        self._runner: web.AppRunner | None = None
        self._in_flight = 0

    # -- lifecycle --------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The site root to give ``Client(base_url=...)``."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Start listening."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # No access log: in query-auth mode the URL holds the key.
        self._runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=0.2, handler_cancellation=True
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
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
    ) -> None:
        """Make the next ``count`` requests meet this fault (before any random one)."""
        self._injected.extend([Fault(kind, status, after_processing, retry_after)] * count)

    def count(self, action: str | None = None, resource: str | None = None) -> int:
        """Count logged requests, optionally of one action (list, get, create, ...)."""
        return sum(
            1
            for r in self.requests
            if (action is None or r.action == action)
            and (resource is None or r.resource == resource)
        )

    def records(self, resource: str) -> list[dict[str, object]]:
        """Return the stored records of a resource, by id."""
        return [dict(r) for _, r in sorted(self.store[resource].items())]

    def seed(self, resource: str, records: list[Mapping[str, object]]) -> list[int]:
        """Store records directly (no request, no validation) and return their ids."""
        ids = []
        for record in records:
            rid = next(self._ids[resource])
            self.store[resource][rid] = {"created_at": self._stamp(), **record, "id": rid}
            ids.append(rid)
        return ids

    # -- the server -------------------------------------------------------------------

    def _stamp(self) -> str:
        moment = datetime.fromtimestamp(self.clock.time(), timezone.utc)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.000000Z")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        route = query.pop("ng", None)
        key = query.pop("api_key", None)
        if key is None:
            auth = request.headers.get("Authorization", "")
            key = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        path = (route if route is not None else request.path).strip("/")
        segments = path.split("/")
        log = LoggedRequest(request.method, "/" + path, query, self.clock.time())
        self.requests.append(log)
        try:
            return await self._answer(request, log, key, segments, query)
        except _Drop:
            log.status = 0
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError() from None

    async def _answer(
        self,
        request: web.Request,
        log: LoggedRequest,
        key: str | None,
        segments: list[str],
        query: dict[str, str],
    ) -> web.StreamResponse:
        if segments[:2] != ["api", "v2"] or len(segments) < 3 or "" in segments:
            return self._json(log, 404, _failure("Unknown resources requested!"))
        if key != self.api_key:
            return self._json(log, 401, _failure("No valid API key provided."))
        if self.latency:
            await asyncio.sleep(self.latency)
        headers, allowed = self._spend(key)
        if not allowed:
            return self._json(log, 429, _failure("Rate limit exceeded"), headers)
        _classify(log, request.method, segments[2:])
        fault = self._draw_fault(request.method)
        log.fault = fault.kind if fault else None
        if fault is not None and not fault.after_processing:
            return await self._fail(log, fault, headers)
        status, body = await self._route(request, log, segments[2:], query)
        if fault is not None:
            return await self._fail(log, fault, headers)
        return self._json(log, status, body, headers)

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
        if self._injected:
            return self._injected.popleft()
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

    async def _fail(
        self, log: LoggedRequest, fault: Fault, headers: dict[str, str]
    ) -> web.Response:
        if fault.kind == "drop":
            raise _Drop
        if fault.kind == "stall":
            await asyncio.sleep(self.faults.stall_seconds)
        if fault.kind == "html":
            log.status = fault.status
            return web.Response(
                status=fault.status, text=_HTML_PAGE, content_type="text/html", headers=headers
            )
        if fault.kind == "malformed":
            log.status = 200
            return web.Response(
                status=200,
                text='{"success": true, "data": [{"id": 1, "acc',
                content_type="application/json",
                headers=headers,
            )
        if fault.kind == "empty":
            log.status = 200
            return web.Response(status=200, body=b"", headers=headers)
        if fault.retry_after is not None:
            headers = {**headers, "Retry-After": str(math.ceil(fault.retry_after))}
        return self._json(log, fault.status, _failure(HTTPStatus(fault.status).phrase), headers)

    def _json(
        self,
        log: LoggedRequest,
        status: int,
        body: object,
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        log.status = status
        all_headers = {"Date": _http_date(int(self.clock.time())), **(headers or {})}
        return web.Response(
            status=status,
            body=json.dumps(body, default=_encode).encode(),
            content_type="application/json",
            headers=all_headers,
        )

    async def _route(
        self, request: web.Request, log: LoggedRequest, segments: list[str], query: dict[str, str]
    ) -> tuple[int, object]:
        """Answer a request that ``_classify`` has already named (resource and action)."""
        resource, action = log.resource, log.action
        if action == "batch":
            if request.method != "POST" or not self.batch or resource not in RESOURCES:
                return 404, _failure("Unknown resources requested!")
            return self._batch(log, resource, await _read_body(request))
        if resource not in RESOURCES or len(segments) > 2:
            return 404, _failure("Unknown resources requested!")
        if action == "other":
            return 405, _failure("Unknown Method!")
        if action == "list":
            return self._list(resource, query)
        if action == "create":
            return self._create(log, resource, await _read_body(request))
        if not segments[1].isdigit():
            return 404, _failure("Unknown resources requested!")
        record_id = int(segments[1])
        record = self.store[resource].get(record_id)
        if record is None:
            return 404, _failure(f"{resource[:-1].capitalize()} not found")
        if action == "get":
            return 200, _success(record)
        if action == "delete":
            del self.store[resource][record_id]
            return 200, _success(None, "Deleted successfully")
        changes = await _read_body(request)
        errors = self._validate(resource, changes, partial=True)
        if errors:
            return 400, _failure("Validation failed", errors)
        record.update(_typed(changes))
        record.update(id=record_id, updated_at=self._stamp())
        return 200, _success(record, "Updated successfully")

    def _validate(
        self, resource: str, data: Mapping[str, object], *, partial: bool = False
    ) -> dict[str, str]:
        errors: dict[str, str] = {}
        if not partial:
            for name in _REQUIRED[resource]:
                if data.get(name) in (None, ""):
                    errors[name] = f"{name.replace('_', ' ').capitalize()} is required"
        email = data.get("email")
        if email not in (None, "") and not (isinstance(email, str) and _EMAIL.match(email)):
            errors["email"] = "Invalid email format"
        for name in ("customer_id", "supplier_id"):
            target = "customers" if name == "customer_id" else "suppliers"
            value = data.get(name)
            if value not in (None, "") and _as_int(value) not in self.store[target]:
                errors[name] = f"{target[:-1].capitalize()} not found"
        try:
            _typed(data)
        except (InvalidOperation, TypeError, ValueError):
            errors["amount"] = "Invalid amount"
        return errors

    def _create(
        self, log: LoggedRequest, resource: str, data: Mapping[str, object]
    ) -> tuple[int, object]:
        errors = self._validate(resource, data)
        if errors:
            return 400, _failure("Validation failed", errors)
        record = self._insert(resource, data)
        log.created = (*log.created, _as_int(record["id"]))
        return 201, _success(record, "Created successfully")

    def _insert(self, resource: str, data: Mapping[str, object]) -> dict[str, object]:
        record_id = next(self._ids[resource])
        record: dict[str, object] = {**_typed(data), "id": record_id}
        items = record.get("items")
        if isinstance(items, list) and "amount" not in data:
            record["amount"] = sum(
                (
                    _money(i.get("amount", 0)) * _money(i.get("qty", 1))
                    for i in items
                    if isinstance(i, dict)
                ),
                Decimal("0.00"),
            )
        if resource == "invoices":
            record.setdefault("invoice_number", f"INV-{record_id:05d}")
            record.setdefault("status", "Unpaid")
        record["created_at"] = record["updated_at"] = self._stamp()
        self.store[resource][record_id] = record
        return record

    def _batch(
        self, log: LoggedRequest, resource: str, body: Mapping[str, object]
    ) -> tuple[int, object]:
        records = body.get(resource)
        if not isinstance(records, list):
            return 400, _failure(
                "Validation failed", {resource: f"a list of {resource} is required"}
            )
        if len(records) > self.batch_max:
            return 400, _failure(f"At most {self.batch_max} records per batch")
        results: list[object] = []
        for index, record in enumerate(records):
            errors = (
                self._validate(resource, record)
                if isinstance(record, dict)
                else {"record": "must be an object"}
            )
            if errors:
                results.append(
                    {
                        "index": index,
                        "success": False,
                        "message": "Validation failed",
                        "errors": errors,
                    }
                )
                continue
            assert isinstance(record, dict)
            stored = self._insert(resource, record)
            log.created = (*log.created, _as_int(stored["id"]))
            results.append({"index": index, "success": True, "id": stored["id"], "data": stored})
        return 200, _success(results, f"{len(log.created)} of {len(records)} created")

    def _list(self, resource: str, query: Mapping[str, str]) -> tuple[int, object]:
        filters = {k: v for k, v in query.items() if k not in ("page", "limit", "search")}
        needle = query.get("search", "").lower()
        # Records are stored in id order, so the dict's order is the listing's order.
        rows: Collection[dict[str, object]] = self.store[resource].values()
        if filters or needle:
            rows = [
                r
                for r in rows
                if all(str(r.get(k, "")) == v for k, v in filters.items())
                and (
                    not needle or any(needle in v.lower() for v in r.values() if isinstance(v, str))
                )
            ]
        if self.paging == "ignore":
            return 200, list(rows)  # a bare array of everything, as shipped servers answer
        try:
            page = max(1, int(query.get("page", "1")))
            size = min(self.max_page_size, max(1, int(query.get("limit", self.default_page_size))))
        except ValueError:
            return 400, _failure("Validation failed", {"page": "page and limit must be numbers"})
        if self.paging == "stuck":
            page = 1
        chunk = list(itertools.islice(rows, (page - 1) * size, page * size))
        body: dict[str, object] = _success(chunk)
        if self.paging != "plain":
            body["meta"] = {
                "current_page": page,
                "total_pages": max(1, math.ceil(len(rows) / size)),
                "total_records": len(rows),
            }
        return 200, body


def _classify(log: LoggedRequest, method: str, segments: list[str]) -> None:
    if segments[0] == "batch" and len(segments) == 2:
        log.resource, log.action = segments[1], "batch"
    elif len(segments) == 1:
        log.resource = segments[0]
        log.action = {"GET": "list", "POST": "create"}.get(method, "other")
    else:
        log.resource = segments[0]
        log.action = {"GET": "get", "PUT": "update", "DELETE": "delete"}.get(method, "other")


async def _read_body(request: web.Request) -> dict[str, object]:
    raw = await request.read()
    if not raw:
        return {}
    if request.content_type == "application/json":
        value = _DECODER.decode(raw.decode("utf-8"))
        return value if isinstance(value, dict) else {}
    form = await request.post()
    return {k: v for k, v in form.items() if isinstance(v, str)}


_DECODER = json.JSONDecoder(parse_float=Decimal)


@functools.lru_cache(maxsize=4)
def _http_date(second: int) -> str:
    return formatdate(second, usegmt=True)


def _typed(data: Mapping[str, object]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in data.items():
        if key in _MONEY and value not in (None, ""):
            out[key] = _money(value)
        elif key == "items" and isinstance(value, list):
            out[key] = [_typed(i) if isinstance(i, dict) else i for i in value]
        elif key.endswith("_id") and isinstance(value, str) and value.isdigit():
            out[key] = int(value)
        else:
            out[key] = value
    return out


def _money(value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, str, Decimal)):
        raise TypeError(f"not an amount: {value!r}")
    return Decimal(value)


def _as_int(value: object) -> int:
    return int(str(value)) if str(value).isdigit() else -1


def _encode(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def _success(data: object, message: str = "") -> dict[str, object]:
    return {"success": True, "data": data, "message": message}


def _failure(message: str, errors: Mapping[str, str] | None = None) -> dict[str, object]:
    return {"success": False, "errors": dict(errors or {}), "message": message}


__all__ = ["Fault", "FaultKind", "Faults", "LoggedRequest", "Paging", "SandboxServer"]
