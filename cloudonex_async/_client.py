"""Client: the session manager every call goes through.

One request path, in :meth:`Client._send`, read top to bottom: the request is built
(``_protocol``); the limiter hands out a grant (a budget token and a concurrency slot);
the request goes through the transport; the answer is parsed once, with the time it
arrived; and the parse decides: return, retry, or raise. Resources, listings and bulk
jobs are all built on :meth:`Client.call`.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import logging
import math
import random
import ssl as _ssl
import time
import warnings
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType

import attrs

from ._budget import Pacing, Priority
from ._clock import SYSTEM_CLOCK, Clock
from ._config import (
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_TIMEOUT,
    UNSET,
    BudgetSettings,
    ClientConfig,
    EventHook,
    _Unset,
    check_max_wait,
    check_retry,
    check_timeout,
    make_config,
)
from ._doctor import Diagnosis, diagnose
from ._events import Event, EventKind
from ._profile import (
    AuthMode,
    BodyEncoding,
    ItemPaths,
    ProfileChoice,
    RouteStyle,
    ServerProfile,
    make_profile,
)
from ._protocol import (
    PROBE_PATH,
    Envelope,
    Failure,
    JSONValue,
    RateLimitInfo,
    RawResponse,
    Request,
    RetryPolicy,
    build_request,
    detect_profile,
    may_have_acted,
    outcome_unknown,
    parse_response,
    retry_decision,
)
from ._ratelimit import (
    CLOSED_WHILE_WAITING,
    BaseLimiter,
    Grant,
    LocalLimiter,
    RateLimitStatus,
    Slots,
    WaitPhase,
)
from ._transport import AiohttpTransport, ClientSession, Transport
from .errors import CloudOnexError, ConfigurationError, RateLimitError, TransportError
from .resources import (
    RECORD_RESOURCES,
    Customers,
    Invoices,
    Leads,
    Orders,
    Products,
    Purchases,
    Quotes,
    Reports,
    Suppliers,
    Tickets,
    Transactions,
    Users,
    Webhooks,
)

logger = logging.getLogger("cloudonex_async")
#: The share of an attempt's timeout it may hold back, before the server's first answer
#: has named the window, while another request is on its way to learn it.
FIRST_ANSWER_HOLD = 0.1
Parse = Callable[[RawResponse, float], "Envelope | Failure"]

#: Seconds :meth:`Client.diagnose` waits for the budget or a slot before each request.
DIAGNOSE_MAX_WAIT = 5.0
OnSend = Callable[[], Awaitable[None]]

# One limiter per (site, key) and event loop, shared by every Client of that key that
# was not given its own. Futures bind to a loop, hence the per-loop table.
_SHARED_LIMITERS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, str], BaseLimiter]
] = weakref.WeakKeyDictionary()


def _final(
    request: Request, error: CloudOnexError, earlier: CloudOnexError | None
) -> BaseException:
    """What a call whose last attempt failed with ``error`` raises (see outcome_unknown)."""
    unknown = outcome_unknown(request.method, error, earlier=earlier)
    if unknown is None:
        return error
    unknown.__cause__ = error
    return unknown


class Client:
    """An asyncio client for the CloudOnex Business Suite API v2.

    Example::

        async with Client(base_url="https://crm.example.com", api_key="KEY") as client:
            customer = await client.customers.create({"account": "Jane Doe"})
            async for invoice in client.invoices.list(status="Unpaid"):
                ...

    Args:
        base_url: the site root or the full ``.../api/v2/`` URL (env ``CLOUDONEX_BASE_URL``).
        api_key: the key from Settings → API Access (env ``CLOUDONEX_API_KEY``).
        auth: ``"bearer"`` sends ``Authorization: Bearer KEY``; ``"query"`` sends
            ``?api_key=KEY``, for hosts whose web server strips the Authorization header.
        profile: ``"documented"`` (the vendor page's API), ``"shipped"`` (what deployed
            CloudOnex 4.x code really does: form bodies, ``?ng=`` routes, singular item
            paths, no paging) or ``"auto"`` (ask the server once, through ``?ng=``, and
            remember the answer for the client's lifetime).
        body_encoding: ``"json"`` or ``"form"`` (PHP-style fields); overrides the profile.
        route_style: ``"path"`` (``/api/v2/...``) or ``"ng"`` (``/?ng=api/v2/...``, for
            hosts without URL rewriting); overrides the profile.
        item_paths: ``"plural"`` (``customers/7``) or ``"singular"`` (``customer/7``);
            overrides the profile.
        timeout: seconds for a whole request.
        connect_timeout: seconds to get a connection (at most ``timeout``; default
            10 s, or ``timeout`` if shorter). A request that got no connection never
            left: it is safe to send again, POSTs included.
        read_timeout: seconds an answer may pause between two pieces (default:
            ``timeout``).
        max_response_bytes: the largest answer read, counted after decompression
            (default 16 MiB): a larger, endless or inflating body raises
            ResponseTooLargeError and memory stays bounded.
        max_concurrency: requests in flight at once from this client.
        limiter: the budget to spend; default: the one shared by every Client of this
            base URL and key in the process (and event loop).
        rate_limit: requests per window until the server announces its own budget
            (default 1000). Given explicitly, this and the next three must match the
            limiter's (``limiter=``, or the shared one of the key): a mismatch is a
            ConfigurationError, never ignored.
        rate_period: the window in seconds until the server announces its own
            (default 3600).
        pacing: ``"burst"`` or ``"smooth"``.
        bulk_reserve: the share of each window bulk work leaves to interactive calls.
        max_wait: seconds a call may wait for the budget before raising RateLimitError
            (None: wait until Reset).
        retry: the retry policy for transient failures.
        session: an ``aiohttp.ClientSession`` to borrow (not closed by the client).
        transport: any object with ``async send(request) -> RawResponse`` to send
            requests instead of aiohttp (for example ``testing.MockTransport``).
        ssl: passed to aiohttp (an SSLContext, or False to disable verification).
        allow_insecure_http: permit ``http://`` to a non-loopback host.
        clock: the time source for waits and backoff (inject a fake one in tests); it
            must be the limiter's.
        user_agent: the User-Agent header.
        event_hooks: callables called with an :class:`Event` at each step of each call
            (sent, answered, retried, waiting for the budget, rate limited).
        lenient_values: what to do with a record value that cannot be read exactly (a
            date like ``2024-02-30``, ``"12,50"`` as an amount): by default the call
            raises ResponseParseError naming the record, the field and the value; with
            True the model holds None there, the raw value is kept in its ``extra``
            under the field's name, and one WARNING is logged per field.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        auth: AuthMode = "bearer",
        profile: ProfileChoice = "documented",
        body_encoding: BodyEncoding | None = None,
        route_style: RouteStyle | None = None,
        item_paths: ItemPaths | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        limiter: BaseLimiter | None = None,
        rate_limit: int | _Unset = UNSET,
        rate_period: float | _Unset = UNSET,
        pacing: Pacing | _Unset = UNSET,
        bulk_reserve: float | _Unset = UNSET,
        max_wait: float | None = None,
        retry: RetryPolicy | None = None,
        session: ClientSession | None = None,
        transport: Transport | None = None,
        ssl: _ssl.SSLContext | bool | None = None,
        allow_insecure_http: bool = False,
        clock: Clock | None = None,
        user_agent: str = "cloudonex-async",
        event_hooks: Sequence[EventHook] = (),
        lenient_values: bool = False,
    ) -> None:
        asked = {
            name: value
            for name, value in (
                ("rate_limit", rate_limit),
                ("rate_period", rate_period),
                ("pacing", pacing),
                ("bulk_reserve", bulk_reserve),
            )
            if value is not UNSET
        }
        self._config: ClientConfig = make_config(
            base_url=base_url,
            api_key=api_key,
            auth=auth,
            profile=profile,
            body_encoding=body_encoding,
            route_style=route_style,
            item_paths=item_paths,
            timeout=timeout,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_response_bytes=max_response_bytes,
            max_concurrency=max_concurrency,
            max_wait=max_wait,
            retry=retry,
            budget=BudgetSettings(**asked),  # type: ignore[arg-type]
            ssl=ssl,
            allow_insecure_http=allow_insecure_http,
            user_agent=user_agent,
            event_hooks=event_hooks,
            lenient_values=lenient_values,
        )
        self._asked_budget = frozenset(asked)
        self._asked_clock = clock
        if transport is not None and session is not None:
            raise ConfigurationError("pass either transport= or session=, not both")
        if limiter is not None and not isinstance(limiter, BaseLimiter):
            raise ConfigurationError(
                f"limiter must be a LocalLimiter or RedisLimiter, not {type(limiter).__name__}"
            )
        self._transport: Transport = transport or AiohttpTransport.from_config(
            self._config, session
        )
        self._owns_transport = transport is None
        self._slots = Slots(self._config.max_concurrency)
        self._limiter: BaseLimiter | None = None
        self.clock: Clock = clock or (limiter.clock if limiter is not None else SYSTEM_CLOCK)
        """The time source of this client's waits and backoff (the limiter's)."""
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None  # bound to the loop of its first call
        if limiter is not None:
            self._adopt(limiter, shared=False)
        elif self._loop is not None:
            self._bind_limiter()
        self._rng = random.Random()
        self._closed = False
        self._root = self  # the Client that owns the session; a view's (with_options) is its source
        self._priority: Priority = "interactive"
        self._closing: asyncio.Future[None] | None = None  # done once closed (wakes retry sleeps)
        self._profile: ServerProfile | None = (
            None if profile == "auto" else self._config.server_profile(profile)
        )
        self._probe_lock: asyncio.Lock | None = None
        self._attach_resources()

    def _attach_resources(self) -> None:
        self.customers = Customers(self)
        self.invoices = Invoices(self)
        self.transactions = Transactions(self)
        self.quotes = Quotes(self)
        self.products = Products(self)
        self.orders = Orders(self)
        self.leads = Leads(self)
        self.suppliers = Suppliers(self)
        self.purchases = Purchases(self)
        self.tickets = Tickets(self)
        self.users = Users(self)
        self.reports = Reports(self)
        self.webhooks = Webhooks(self)

    # -- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        self._check_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the client and its transport.

        Every call of this client (and of its :meth:`with_options` views) that waits
        for the budget, a slot or a retry is woken at once with a ConfigurationError
        (a write whose earlier attempt may have been carried out ends with that
        uncertainty instead), and requests in flight end with a TransportError:
        shutdown never waits for a Reset. Closing a view does nothing; close the
        Client it came from.
        """
        if self._root is not self or self._closed:
            return
        self._closed = True
        if self._limiter is not None:
            self._limiter.cancel_waiters(self)
        if self._closing is not None and not self._closing.done():
            self._closing.set_result(None)
        aclose = getattr(self._transport, "aclose", None)
        if aclose is not None:
            await aclose()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called (on the Client a view came from)."""
        return self._root._closed

    def _check_open(self) -> None:
        if self._root._closed:
            raise ConfigurationError("this Client is closed; create a new one (or use async with)")

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        state = self.__dict__  # __init__ may have failed half-way
        if state.get("_root") is not self or state.get("_closed", True):
            return
        transport = state.get("_transport")
        if isinstance(transport, AiohttpTransport) and self._owns_transport and transport.abandon():
            _warn(
                f"{self!r} was never closed; use `async with Client(...)` or "
                "`await client.close()` (its connections were dropped)",
                ResourceWarning,
                source=self,
            )

    def with_options(
        self,
        *,
        timeout: float | _Unset = UNSET,
        retry: RetryPolicy | _Unset = UNSET,
        max_wait: float | _Unset | None = UNSET,
        priority: Priority | _Unset = UNSET,
    ) -> Client:
        """Return a light view of this client whose calls use other settings.

        The view shares this client's session, connection pool, concurrency slots,
        budget, hooks and server profile; every resource call made through it honours
        the options given here, the others stay this client's. Closing the view does
        nothing; close the client. Example::

            patient = client.with_options(timeout=120, max_wait=None)
            report = await patient.invoices.get(7)

        Args:
            timeout: seconds for each attempt's whole exchange.
            retry: the retry policy (``RetryPolicy(attempts=1)``: never retry).
            max_wait: seconds a call may wait before its request leaves (0: never
                wait; None: no bound).
            priority: the priority of the view's calls (bulk jobs run at ``"bulk"``
                whatever it says).
        """
        changes: dict[str, object] = {}
        if not isinstance(timeout, _Unset):
            check_timeout(timeout)
            config = self._config
            changes["timeout"] = float(timeout)
            changes["connect_timeout"] = min(config.connect_timeout, float(timeout))
            changes["read_timeout"] = min(config.read_timeout, float(timeout))
        if not isinstance(retry, _Unset):
            check_retry(retry)
            changes["retry"] = retry
        if not isinstance(max_wait, _Unset):
            check_max_wait(max_wait)
            changes["max_wait"] = max_wait
        if not isinstance(priority, _Unset) and priority not in ("interactive", "bulk"):
            raise ConfigurationError(f"priority must be 'interactive' or 'bulk', not {priority!r}")
        view = copy.copy(self)
        view._config = attrs.evolve(self._config, **changes)  # type: ignore[arg-type]
        if not isinstance(priority, _Unset):
            view._priority = priority
        view._attach_resources()
        return view

    def __repr__(self) -> str:
        view = "" if self._root is self else ", view"
        return f"Client(base_url={self._config.site_root!r}, auth={self._config.auth!r}{view})"

    # -- the budget -------------------------------------------------------------------

    @property
    def config(self) -> ClientConfig:
        """The settings this client runs with (the budget's are its limiter's)."""
        return self._config

    @property
    def limiter(self) -> BaseLimiter:
        """The budget this client spends (shared by all Clients of the key by default)."""
        return self._limiter or self._bind_limiter()

    @property
    def rate_limit(self) -> RateLimitStatus:
        """The budget as last seen (limit, remaining, reset time, window) and the counters.

        Read inside the running loop. With a RedisLimiter this is the view as of this
        process's last request; ``await client.limiter.statistics()`` asks Redis.
        """
        return self.limiter.statistics_nowait()

    def _bind_limiter(self) -> BaseLimiter:
        """Find (or make) the shared limiter of this key on the running loop."""
        table = _SHARED_LIMITERS.setdefault(asyncio.get_running_loop(), {})
        digest = hashlib.sha256(self._config.api_key.encode()).hexdigest()
        key = (self._config.site_root, digest)
        limiter = table.get(key)
        if limiter is None:
            budget = self._config.budget
            limiter = table[key] = LocalLimiter(
                rate_limit=budget.rate_limit,
                rate_period=budget.rate_period,
                pacing=budget.pacing,
                bulk_reserve=budget.bulk_reserve,
                clock=self.clock,
            )
        self._adopt(limiter, shared=True)
        return limiter

    def _adopt(self, limiter: BaseLimiter, *, shared: bool) -> None:
        """Spend ``limiter``'s budget, refusing settings that contradict it."""
        mine = self._config.budget
        theirs = BudgetSettings(
            rate_limit=limiter.rate_limit,
            rate_period=limiter.rate_period,
            pacing=limiter.pacing,
            bulk_reserve=limiter.bulk_reserve,
        )
        clash = [
            f"{name}={getattr(mine, name)!r} (it has {getattr(theirs, name)!r})"
            for name in sorted(self._asked_budget)
            if getattr(mine, name) != getattr(theirs, name)
        ]
        if self._asked_clock is not None and self._asked_clock is not limiter.clock:
            clash.append("clock= (it runs on another clock)")
        if clash:
            whose = "the limiter another Client of this key already uses" if shared else "limiter="
            raise ConfigurationError(
                f"this Client asks for {', '.join(clash)}, which contradicts {whose}; pass the "
                "same settings, or a limiter of its own (limiter=LocalLimiter(...)), knowing "
                "that two budgets for one key can overspend it together"
            )
        self._limiter = limiter
        self.clock = limiter.clock
        self._config = attrs.evolve(
            self._config,
            rate_limit=theirs.rate_limit,
            rate_period=theirs.rate_period,
            pacing=theirs.pacing,
            bulk_reserve=theirs.bulk_reserve,
        )

    # -- calls --------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, object] | None = None,
        json: JSONValue | Mapping[str, object] = None,
        priority: Priority = "interactive",
        max_wait: float | _Unset | None = UNSET,
    ) -> JSONValue:
        """Send one request to ``/api/v2/<path>`` and return the envelope's ``data``.

        Args:
            method: GET, POST, PUT or DELETE.
            path: relative to ``/api/v2/``, for example ``"customers"`` or ``"customers/7"``.
            params: query parameters.
            json: the request body (encoded as the profile says: JSON or form fields).
            priority: ``"interactive"`` or ``"bulk"`` (see the limiter).
            max_wait: override the client's ``max_wait`` for this call.
        """
        profile = self._profile or await self.server_profile()
        request = self._build(method, path, params, json, profile)
        envelope = await self._send(request, parse_response, priority, max_wait, None)
        return envelope.data

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, object] | None = None,
        body: JSONValue | Mapping[str, object] = None,
        priority: Priority = "interactive",
        max_wait: float | _Unset | None = UNSET,
        on_send: OnSend | None = None,
    ) -> Envelope:
        """Send one request and return the whole answer: what every resource is built on.

        Like :meth:`request`, but returns the :class:`Envelope` (``data``, ``message``,
        ``meta``, ``legacy``).

        Args:
            on_send: awaited once per attempt, after the attempt holds its budget token
                and concurrency slot and just before the request leaves (bulk jobs
                journal a record as sent there). If it raises, nothing is sent and the
                token is given back.
        """
        profile = self._profile or await self.server_profile()
        request = self._build(method, path, params, body, profile)
        return await self._send(request, parse_response, priority, max_wait, on_send)

    async def server_profile(self) -> ServerProfile:
        """Return the profile this client speaks to its server.

        With ``profile="auto"`` the first call asks the server (one request, through
        ``?ng=`` so that it works on hosts without URL rewriting), logs the decision
        once at INFO and keeps it for the client's lifetime.
        """
        if self._profile is not None:
            return self._profile
        if self._root is not self:  # a view speaks its client's profile
            self._profile = await self._root.server_profile()
            return self._profile
        if self._probe_lock is None:
            self._probe_lock = asyncio.Lock()
        async with self._probe_lock:
            if self._profile is None:
                # Through ?ng= (it works without URL rewriting), unless told otherwise.
                route = self._config.route_style or "ng"
                probe = make_profile("documented", auth=self._config.auth, route_style=route)
                request = self._build("GET", PROBE_PATH, None, None, probe)
                answer = await self._send(request, detect_profile, "interactive", UNSET, None)
                name = "shipped" if answer.data == "shipped" else "documented"
                self._profile = self._config.server_profile(name)
                kind = "the documented API" if name == "documented" else "shipped 4.x code"
                logger.info(
                    "%s answers like CloudOnex's %s; using %s",
                    self._config.site_root,
                    kind,
                    self._profile.describe(),
                )
        return self._profile

    async def diagnose(self) -> Diagnosis:
        """Find out what the configured server really does, and what to set for it.

        Sends at most 15 GET requests (nothing is created or changed), each once and
        under the budget: which ways of sending the key and which URL forms reach the
        API, the profile, the rate-limit headers, paging, the batch endpoint, which
        resources answer, the server's clock. ``cloudonex doctor`` prints the same.
        Never raises for what it finds: an unreachable server is a finding too.
        """
        self._check_open()
        # Each question once, and never a long wait for the budget or a slot: a spent
        # budget is a finding, not a reason to hang.
        wait = self._config.max_wait
        once = self.with_options(
            retry=RetryPolicy(attempts=1),
            max_wait=DIAGNOSE_MAX_WAIT if wait is None else min(wait, DIAGNOSE_MAX_WAIT),
            priority="interactive",
        )
        resources = [resource.path for resource in RECORD_RESOURCES]
        return await diagnose(self._config, once._exchange, self.clock.time, resources)

    async def _exchange(self, request: Request) -> RawResponse:
        """Send ``request`` once under the budget; return its answer, whatever it says.

        A 429 is read as any call's is (the limiter pauses), then returned too.
        """
        answers: list[RawResponse] = []

        def keep(raw: RawResponse, now: float) -> Envelope | Failure:
            answers.append(raw)
            if raw.status == 429:
                return parse_response(raw, now)
            return Envelope(
                None, budget=RateLimitInfo.from_headers(raw.headers, now, request.horizon)
            )

        request.timeout = self._config.timeout
        try:
            await self._send(request, keep, "interactive", UNSET, None)
        except RateLimitError:
            if not answers:  # held back before it left
                raise
        return answers[-1]

    def _build(
        self,
        method: str,
        path: str,
        params: Mapping[str, object] | None,
        body: JSONValue | Mapping[str, object],
        profile: ServerProfile,
    ) -> Request:
        if self._root._closed:
            self._check_open()
        config = self._config
        request = build_request(
            site_root=config.site_root,
            api_key=config.api_key,
            auth=config.auth,
            method=method,
            path=path,
            params=params,
            body=body,
            body_encoding=profile.body_encoding,
            route_style=profile.route_style,
            profile=profile.name,
            # A Reset, Retry-After or clock skew beyond twice the window is garbage.
            horizon=2 * config.rate_period,
        )
        if self._root is not self:  # a view's own timeout
            request.timeout = config.timeout
        return request

    # -- the pipeline -------------------------------------------------------------------

    async def _send(
        self,
        request: Request,
        parse: Parse,
        priority: Priority,
        max_wait: float | _Unset | None,
        on_send: OnSend | None,
    ) -> Envelope:
        """Send ``request`` under the budget, once per attempt, until it is answered.

        Each attempt: take a grant (budget token, then slot); let ``on_send`` know;
        send; parse the answer with the time it arrived; end the grant (released with
        the budget the answer announced, or given back if the request never left);
        then return the value, or retry, or raise, as ``retry_decision`` says.
        """
        if max_wait is UNSET:
            wait = self._config.max_wait
        else:
            check_max_wait(max_wait)
            wait = max_wait
        if priority == "interactive":
            priority = self._priority
        root = self._root
        # The loop of the first call is closed once asyncio.run returns: a later call
        # runs in another loop. (A cheap test: asking for the running loop costs a
        # system call per request on Python 3.11.)
        if root._loop is None or root._loop.is_closed():
            root._enter_loop()
        limiter = self._limiter or self._bind_limiter()
        hooks = self._config.event_hooks
        debug = logger.isEnabledFor(logging.DEBUG)
        attempt = 0
        earlier: CloudOnexError | None = None  # an attempt the server may have acted on
        while True:
            attempt += 1
            grant = limiter.grant_nowait(priority, self._slots) or await self._wait_for_grant(
                limiter, request, priority, wait, attempt
            )
            answer: Envelope | Failure | None = None
            try:  # as ``async with grant:``, without two coroutine frames per request
                if root._closed:  # closed after this call was handed its grant
                    raise ConfigurationError(CLOSED_WHILE_WAITING)
                if on_send is not None:
                    await on_send()
                grant.sent = True  # from here on the request may leave
                if hooks:
                    self._emit("request_sent", request, attempt)
                started = time.perf_counter() if debug or hooks else 0.0
                try:
                    raw = await self._transport.send(request)
                except TransportError as exc:
                    grant.sent = exc.request_sent
                    grant.failed = True
                    error: CloudOnexError = exc
                    if debug:
                        logger.debug("%s %s failed: %s", request.method, request.display_url, exc)
                else:
                    if raw.request is None:
                        raw.request = request
                    answer = parse(raw, self.clock.time())
                    grant.answered = True
                    grant.budget = answer.budget
                    if isinstance(answer, Failure) and isinstance(answer.error, RateLimitError):
                        # Paused before the grant ends, or the callers it wakes would
                        # go straight into the same 429.
                        await limiter.rate_limited(answer.retry_after, answer.budget)
                    if debug or hooks:
                        self._answered(request, raw, answer, attempt, started, debug)
            finally:
                # Released with what the answer announced, or given back if it never left.
                if not grant.end_nowait():
                    await asyncio.shield(grant.end())
            retry_after = None
            if answer is not None:
                if type(answer) is Envelope:
                    return answer
                assert isinstance(answer, Failure)
                error, retry_after = answer.error, answer.retry_after
                if hooks and isinstance(error, RateLimitError):
                    self._emit("rate_limited", request, attempt, status=429, seconds=retry_after)
            decision = retry_decision(
                method=request.method,
                attempt=attempt,
                error=error,
                policy=self._config.retry,
                rng=self._rng,
                retry_after=retry_after,
            )
            if not decision.retry or (
                # A wait the server asked for (a 429 pauses until Reset when it names no
                # time) that is longer than the caller's max_wait.
                wait is not None
                and (retry_after is not None or isinstance(error, RateLimitError))
                and (math.inf if retry_after is None else decision.delay) > wait
            ):
                raise _final(request, error, earlier)
            limiter.note_retry()
            if hooks:
                self._emit(
                    "retry_scheduled",
                    request,
                    attempt,
                    seconds=decision.delay,
                    reason=decision.reason,
                )
            if debug:
                logger.debug(
                    "retrying %s %s in %.2f s (%s, attempt %d)",
                    request.method,
                    request.display_url,
                    decision.delay,
                    decision.reason,
                    attempt + 1,
                )
            if not await self._pause(decision.delay):  # closed meanwhile: no more attempts
                final = _final(request, error, earlier)
                if request.method != "GET" and (final is not error or may_have_acted(error)):
                    raise final  # a write that may have been carried out: say so
                raise ConfigurationError(
                    "the client was closed before this call could be sent again (its last "
                    "attempt failed); create a new Client to send it"
                ) from error
            if earlier is None and may_have_acted(error):
                earlier = error

    async def _wait_for_grant(
        self,
        limiter: BaseLimiter,
        request: Request,
        priority: Priority,
        max_wait: float | None,
        attempt: int,
    ) -> Grant:
        """Wait for a grant (see :meth:`BaseLimiter.grant`); its errors name the request."""
        try:
            return await limiter.grant(
                priority=priority,
                max_wait=max_wait,
                owner=self._root,
                slots=self._slots,
                on_wait=self._wait_reporter(request, attempt) if self._config.event_hooks else None,
                hold_limit=FIRST_ANSWER_HOLD * self._config.timeout,
            )
        except (RateLimitError, TransportError) as error:
            error.method, error.url = request.method, request.display_url
            error.message = f"{request.method} {request.display_url}: {error.message}"
            error.args = (error.message,)
            raise

    async def _pause(self, seconds: float) -> bool:
        """Sleep before a retry; return False at once if the client is (or gets) closed."""
        root = self._root
        if seconds > 0 and not root._closed:
            if root._closing is None:
                root._closing = asyncio.get_running_loop().create_future()
            sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
            try:
                await asyncio.wait({sleeper, root._closing}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not sleeper.done():
                    sleeper.cancel()
                    await asyncio.gather(sleeper, return_exceptions=True)
        return not root._closed

    def _enter_loop(self) -> None:
        """Bind to the running loop at the first call; refuse any other loop after."""
        loop = asyncio.get_running_loop()
        if self._loop is None or self._loop is loop:
            self._loop = loop
            return
        raise ConfigurationError(
            "this Client was first used in another event loop, and its connections and "
            "budget belong to that loop; create one Client per event loop (for example "
            "`async with Client(...) as client:` inside the coroutine given to asyncio.run)"
        )

    # -- events -------------------------------------------------------------------------

    def _emit(
        self,
        kind: EventKind,
        request: Request,
        attempt: int,
        *,
        status: int | None = None,
        seconds: float | None = None,
        remaining: int | None = None,
        reason: str | None = None,
    ) -> None:
        event = Event(
            kind=kind,
            method=request.method,
            path=request.path,
            attempt=attempt,
            status=status,
            seconds=seconds,
            remaining=remaining,
            reason=reason,
        )
        for hook in self._config.event_hooks:
            try:
                hook(event)
            except Exception:  # a broken metrics hook must not break the call
                logger.warning("event hook %r failed on %s", hook, kind, exc_info=True)

    def _wait_reporter(self, request: Request, attempt: int) -> Callable[[WaitPhase, float], None]:
        def report(phase: WaitPhase, seconds: float) -> None:
            kind: EventKind = "budget_wait_started" if phase == "started" else "budget_wait_ended"
            self._emit(kind, request, attempt, seconds=seconds)

        return report

    def _answered(
        self,
        request: Request,
        raw: RawResponse,
        answer: Envelope | Failure,
        attempt: int,
        started: float,
        debug: bool,
    ) -> None:
        elapsed = time.perf_counter() - started
        remaining = answer.budget.remaining if answer.budget is not None else None
        if debug:
            logger.debug(
                "%s %s -> %d in %.1f ms (budget remaining: %s)",
                request.method,
                request.display_url,
                raw.status,
                elapsed * 1000,
                "unknown" if remaining is None else remaining,
            )
        if self._config.event_hooks:
            self._emit(
                "response_received",
                request,
                attempt,
                status=raw.status,
                seconds=elapsed,
                remaining=remaining,
            )
