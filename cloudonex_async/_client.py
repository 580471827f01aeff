"""Client: the session manager every call goes through.

One request path: build (``_protocol``), wait for the budget (the limiter) and a
concurrency slot, send (``_transport``), read the budget headers, parse, and decide
on a retry (``_protocol`` again). Resources, listings and bulk jobs are all built on
:meth:`Client.request` / :meth:`Client._call`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import ssl as _ssl
import time
import weakref
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TypeVar

import aiohttp

from ._clock import SYSTEM_CLOCK, Clock
from ._config import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_TIMEOUT,
    UNSET,
    ClientConfig,
    _Unset,
    make_config,
)
from ._hooks import BEFORE_SEND
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
    JSONValue,
    RateLimitInfo,
    RawResponse,
    Request,
    RetryPolicy,
    build_request,
    detect_profile,
    outcome_unknown,
    parse_response,
    retry_decision,
    session_headers,
)
from ._ratelimit import (
    DEFAULT_BULK_RESERVE,
    DEFAULT_RATE_LIMIT,
    DEFAULT_RATE_PERIOD,
    BaseLimiter,
    LocalLimiter,
    Pacing,
    Priority,
    RateLimitStatus,
)
from ._transport import Transport
from .errors import CloudOnexError, ConfigurationError, RateLimitError, TransportError
from .resources import (
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
T = TypeVar("T")

# One limiter per (site, key) and event loop, shared by every Client of that key that
# was not given its own. Futures bind to a loop, hence the per-loop table.
_SHARED_LIMITERS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, str], BaseLimiter]
] = weakref.WeakKeyDictionary()


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
        auth: ``"bearer"`` sends ``Authorization: Bearer KEY``; ``"query"`` uses the
            documented ``/?api_key=KEY&ng=api/v2/...`` route, for hosts whose web server
            strips the Authorization header.
        profile: ``"documented"`` (the vendor page's API), ``"shipped"`` (what deployed
            CloudOnex 4.x code really does: form bodies, ``?ng=`` routes, singular item
            paths, no paging) or ``"auto"`` (ask the server once, through ``?ng=``, and
            remember the answer for the client's lifetime).
        body_encoding: ``"json"`` or ``"form"`` (PHP-style fields); overrides the profile.
        route_style: ``"path"`` (``/api/v2/...``) or ``"ng"`` (``/?ng=api/v2/...``, for
            hosts without URL rewriting); overrides the profile.
        item_paths: ``"plural"`` (``customers/7``) or ``"singular"`` (``customer/7``);
            overrides the profile.
        timeout: seconds for a whole request; connect_timeout: seconds to connect.
        max_concurrency: requests in flight at once from this client.
        limiter: the budget to spend; default: the one shared by every Client of this
            base URL and key in the process, built from rate_limit, rate_period,
            pacing and bulk_reserve.
        max_wait: seconds a call may wait for the budget before raising RateLimitError
            (None: wait until Reset).
        retry: the retry policy for transient failures.
        session: an ``aiohttp.ClientSession`` to borrow (not closed by the client).
        ssl: passed to aiohttp (an SSLContext, or False to disable verification).
        allow_insecure_http: permit ``http://`` to a non-loopback host.
        clock: the time source for waits and backoff (inject a fake one in tests).
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
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        limiter: BaseLimiter | None = None,
        rate_limit: int = DEFAULT_RATE_LIMIT,
        rate_period: float = DEFAULT_RATE_PERIOD,
        pacing: Pacing = "burst",
        bulk_reserve: float = DEFAULT_BULK_RESERVE,
        max_wait: float | None = None,
        retry: RetryPolicy | None = None,
        session: aiohttp.ClientSession | None = None,
        ssl: _ssl.SSLContext | bool | None = None,
        allow_insecure_http: bool = False,
        clock: Clock | None = None,
        user_agent: str = "cloudonex-async",
    ) -> None:
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
            max_concurrency=max_concurrency,
            max_wait=max_wait,
            retry=retry,
            rate_limit=rate_limit,
            rate_period=rate_period,
            pacing=pacing,
            bulk_reserve=bulk_reserve,
            ssl=ssl,
            allow_insecure_http=allow_insecure_http,
            user_agent=user_agent,
        )
        self._transport = Transport(
            api_key=self._config.api_key,
            headers=session_headers(
                api_key=self._config.api_key,
                auth=self._config.auth,
                user_agent=self._config.user_agent,
            ),
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_connections=max_concurrency,
            ssl=ssl,
            session=session,
        )
        self._limiter = limiter
        self._clock = clock or (limiter.clock if limiter is not None else SYSTEM_CLOCK)
        # An owned session's connector already holds requests to max_concurrency
        # connections; a borrowed session's may allow more, so those pass a semaphore.
        self._slots = asyncio.Semaphore(max_concurrency) if session is not None else None
        self._rng = random.Random()
        self._closed = False
        self._profile: ServerProfile | None = (
            None if profile == "auto" else self._config.server_profile(profile)
        )
        self._probe_lock: asyncio.Lock | None = None
        # Per resource: whether the server has POST batch/<resource> (None: not known yet).
        self._batch_support: dict[str, bool] = {}
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
        """Close the client: wake its callers waiting for the budget, close the session."""
        if self._closed:
            return
        self._closed = True
        if self._limiter is not None:
            self._limiter.cancel_waiters(self)
        await self._transport.aclose()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ConfigurationError("this Client is closed; create a new one (or use async with)")

    def __repr__(self) -> str:
        return f"Client(base_url={self._config.site_root!r}, auth={self._config.auth!r})"

    # -- the budget -------------------------------------------------------------------

    @property
    def config(self) -> ClientConfig:
        """The settings this client was built with."""
        return self._config

    @property
    def limiter(self) -> BaseLimiter:
        """The budget this client spends (shared by all Clients of the key by default)."""
        if self._limiter is None:
            self._limiter = self._shared_limiter()
        return self._limiter

    def _shared_limiter(self) -> BaseLimiter:
        table = _SHARED_LIMITERS.setdefault(asyncio.get_running_loop(), {})
        digest = hashlib.sha256(self._config.api_key.encode()).hexdigest()
        key = (self._config.site_root, digest)
        if key not in table:
            table[key] = LocalLimiter(
                rate_limit=self._config.rate_limit,
                rate_period=self._config.rate_period,
                pacing=self._config.pacing,
                bulk_reserve=self._config.bulk_reserve,
                clock=self._clock,
            )
        return table[key]

    @property
    def rate_limit(self) -> RateLimitStatus:
        """The budget as last seen (limit, remaining, reset time) and the counters.

        Read inside the running loop. With a RedisLimiter this is the view as of the
        last request; ``await client.limiter.statistics()`` asks Redis.
        """
        return self.limiter.statistics_nowait()

    # -- requests ---------------------------------------------------------------------

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
            json: the request body.
            priority: ``"interactive"`` or ``"bulk"`` (see the limiter).
            max_wait: override the client's ``max_wait`` for this call.
        """
        envelope = await self._call(
            method, path, params=params, body=json, priority=priority, max_wait=max_wait
        )
        return envelope.data

    async def server_profile(self) -> ServerProfile:
        """Return the profile this client speaks to its server.

        With ``profile="auto"`` the first call asks the server (one request, through
        ``?ng=`` so that it works on hosts without URL rewriting), logs the decision
        once at INFO and keeps it for the client's lifetime.
        """
        if self._profile is not None:
            return self._profile
        if self._probe_lock is None:
            self._probe_lock = asyncio.Lock()
        async with self._probe_lock:
            if self._profile is None:
                probe = make_profile("documented", auth=self._config.auth, route_style="ng")
                request = self._build("GET", PROBE_PATH, None, None, probe)
                name = await self._exchange(request, detect_profile)
                self._profile = self._config.server_profile(name)
                logger.info(
                    "%s answers like %s; using %s",
                    self._config.site_root,
                    "the documented CloudOnex API"
                    if name == "documented"
                    else "shipped CloudOnex 4.x code",
                    self._profile.describe(),
                )
        return self._profile

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, object] | None = None,
        body: JSONValue | Mapping[str, object] = None,
        priority: Priority = "interactive",
        max_wait: float | _Unset | None = UNSET,
    ) -> Envelope:
        profile = self._profile or await self.server_profile()
        request = self._build(method, path, params, body, profile)
        return await self._exchange(request, parse_response, priority=priority, max_wait=max_wait)

    def _build(
        self,
        method: str,
        path: str,
        params: Mapping[str, object] | None,
        body: JSONValue | Mapping[str, object],
        profile: ServerProfile,
    ) -> Request:
        self._check_open()
        config = self._config
        return build_request(
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
        )

    async def _exchange(
        self,
        request: Request,
        parse: Callable[[RawResponse], T],
        *,
        priority: Priority = "interactive",
        max_wait: float | _Unset | None = UNSET,
    ) -> T:
        """Send ``request`` under the budget, retrying as the policy allows; parse the answer."""
        config = self._config
        wait = config.max_wait if max_wait is UNSET else max_wait
        limiter = self._limiter or self.limiter
        debug = logger.isEnabledFor(logging.DEBUG)
        attempt = 0
        while True:
            attempt += 1
            ticket = limiter.acquire_nowait(priority) or await limiter.acquire(
                priority=priority, max_wait=wait, owner=self
            )
            before_send = BEFORE_SEND.get()
            if before_send is not None:
                try:
                    await before_send()
                except BaseException:
                    await asyncio.shield(limiter.refund(ticket))
                    raise
            sending = False
            started = time.perf_counter() if debug else 0.0
            try:
                if self._slots is None:
                    sending = True
                    raw = await self._transport.send(request)
                else:
                    async with self._slots:
                        sending = True
                        raw = await self._transport.send(request)
            except TransportError as exc:
                if exc.request_sent:
                    await limiter.release(ticket)
                else:
                    await limiter.refund(ticket)
                error: CloudOnexError = exc
                logger.debug("%s %s failed: %s", request.method, request.display_url, exc.message)
            except BaseException:
                # Cancelled: before the request left, the budget was not spent.
                end = limiter.release(ticket) if sending else limiter.refund(ticket)
                await asyncio.shield(end)
                raise
            else:
                info = RateLimitInfo.from_headers(raw.headers, self._clock.time())
                if not limiter.release_nowait(ticket, info):
                    await limiter.release(ticket, info)
                if debug:
                    logger.debug(
                        "%s %s -> %d in %.1f ms (budget remaining: %s)",
                        request.method,
                        request.display_url,
                        raw.status,
                        (time.perf_counter() - started) * 1000,
                        info.remaining if info is not None else "unknown",
                    )
                try:
                    return parse(raw)
                except CloudOnexError as exc:
                    error = exc
                    if isinstance(exc, RateLimitError):
                        await limiter.rate_limited(exc.retry_after, info)
            decision = retry_decision(
                method=request.method,
                attempt=attempt,
                error=error,
                policy=config.retry,
                rng=self._rng,
            )
            if not decision.retry:
                unknown = outcome_unknown(request.method, error)
                if unknown is not None:
                    raise unknown from error
                raise error
            limiter.note_retry()
            logger.debug(
                "retrying %s %s in %.2f s (%s, attempt %d)",
                request.method,
                request.display_url,
                decision.delay,
                decision.reason,
                attempt + 1,
            )
            await self._clock.sleep(decision.delay)
