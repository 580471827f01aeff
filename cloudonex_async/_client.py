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
from collections.abc import Mapping
from types import TracebackType

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
from ._protocol import (
    AuthMode,
    BodyEncoding,
    Envelope,
    JSONValue,
    RateLimitInfo,
    RetryPolicy,
    build_request,
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
    Suppliers,
    Tickets,
    Transactions,
)

logger = logging.getLogger("cloudonex_async")

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
        body_encoding: ``"json"``, or ``"form"`` for shipped servers that read form fields.
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
        body_encoding: BodyEncoding = "json",
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
            body_encoding=body_encoding,
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
            body_encoding=config.body_encoding,
        )
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
                    return parse_response(raw)
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
