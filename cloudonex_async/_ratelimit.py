"""The request budget: a pure window model, and the in-process limiter built on it.

:class:`Budget` is the I/O-free model of one key's hourly budget. Before any response
it allows ``rate_limit`` grants in any ``rate_period`` (a sliding log). Once a response
has announced ``X-RateLimit-*``, it follows the server's window: the requests used are
the larger of what this process granted in the window and what the server reports
(``Limit - Remaining``), so answers that arrive out of order never make it
over-spend. At Reset the window rolls over to a full budget, less the requests still
in flight: the server may count those in the new window.

:class:`BaseLimiter` queues waiting callers (interactive before bulk, FIFO within a
priority) on top of three primitives; :class:`LocalLimiter` implements them with a
Budget in memory, and :class:`~cloudonex_async.limiters.RedisLimiter` in Redis.
"""

from __future__ import annotations

import abc
import asyncio
import functools
import itertools
import math
from collections import deque
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Literal

import aiolimiter
import attrs

from ._clock import SYSTEM_CLOCK, Clock, SystemClock
from ._protocol import RateLimitInfo
from .errors import ConfigurationError, RateLimitError

Priority = Literal["interactive", "bulk"]
Pacing = Literal["burst", "smooth"]

DEFAULT_RATE_LIMIT = 1000
DEFAULT_RATE_PERIOD = 3600.0
DEFAULT_BULK_RESERVE = 0.1
# Wait this long past Reset before spending the new window, for clock granularity.
DEFAULT_RESET_MARGIN = 0.05


def reserve_size(limit: int, fraction: float) -> int:
    """Requests of each window that bulk calls leave to interactive ones.

    (The epsilon keeps 1000 * 0.1 at 100, not 101; the Redis script does the same.)
    """
    return math.ceil(limit * fraction - 1e-9)


@attrs.define  # not frozen: one is made per request, and frozen classes cost more to build
class Ticket:
    """The right to send one request, as granted by a limiter (read-only by convention)."""

    id: str
    granted_at: float
    priority: Priority


@attrs.frozen(kw_only=True)
class RateLimitStatus:
    """A snapshot of the budget and of what the limiter has done so far.

    Attributes:
        limit: requests per window. remaining: what this process believes is left.
        reset_at: when the current window ends (UTC), once the server announced it.
        requests_sent, waits, time_waited (seconds), rate_limited (429s seen), retries.
    """

    limit: int
    remaining: int
    reset_at: datetime | None
    requests_sent: int = 0
    waits: int = 0
    time_waited: float = 0.0
    rate_limited: int = 0
    retries: int = 0


@attrs.define
class Budget:
    """One key's budget, as a pure function of grants, server reports and time."""

    limit: int = DEFAULT_RATE_LIMIT
    period: float = DEFAULT_RATE_PERIOD
    bulk_reserve: float = DEFAULT_BULK_RESERVE
    margin: float = DEFAULT_RESET_MARGIN
    window_reset: float | None = None  # the server's Reset value naming the current window
    window_end: float | None = None  # local time the current window ends; None: no server info
    granted: int = 0  # grants made by us in the current server window
    reported: int = 0  # the most the server said was used in it (Limit - Remaining)
    paused_until: float = 0.0
    log: deque[float] = attrs.field(factory=deque)  # grant times within the last period
    in_flight: list[float] = attrs.field(factory=list)  # grant times of unfinished requests

    def reserve(self, priority: Priority) -> int:
        """Return how many requests of the window ``priority`` may not touch."""
        return reserve_size(self.limit, self.bulk_reserve) if priority == "bulk" else 0

    def _advance(self, now: float) -> None:
        log, horizon = self.log, now - self.period
        while log and log[0] <= horizon:
            log.popleft()
        if self.window_end is not None and now >= self.window_end + self.margin:
            # The server's window is over. Until a response names the next one, assume
            # it follows on directly and starts with the whole budget.
            skipped = max(1, math.ceil((now - self.window_end) / self.period))
            self.window_end += skipped * self.period
            self.window_reset = None
            self.granted = len(self.in_flight)
            self.reported = 0

    def used(self, now: float) -> int:
        """Return the requests counted against the current window."""
        self._advance(now)
        if self.window_end is None:
            return len(self.log)
        return max(self.granted, self.reported)

    def available(self, now: float, priority: Priority = "interactive") -> int:
        """Return how many requests of ``priority`` may start now."""
        used = self.used(now)
        if now < self.paused_until:
            return 0
        return max(0, self.limit - used - self.reserve(priority))

    def next_refill(self, now: float) -> float:
        """Return the local time at which more budget may become available."""
        self._advance(now)
        if now < self.paused_until:
            return self.paused_until
        if self.window_end is not None:
            return self.window_end + self.margin
        return self.log[0] + self.period if self.log else now

    def try_take(self, now: float, priority: Priority = "interactive") -> bool:
        """Count one grant if :meth:`available` allows ``priority`` one; return whether it did.

        The request is in flight until :meth:`finish`.
        """
        if self.available(now, priority) <= 0:
            return False
        self.log.append(now)
        self.in_flight.append(now)
        self.granted += 1
        return True

    def finish(self, granted_at: float) -> None:
        """Note that the request granted at ``granted_at`` is no longer in flight."""
        try:
            self.in_flight.remove(granted_at)
        except ValueError:
            pass

    def give_back(self, granted_at: float) -> None:
        """Undo a grant whose request was never sent."""
        self.finish(granted_at)
        try:
            self.log.remove(granted_at)
        except ValueError:
            pass
        if self.window_end is None or granted_at >= self.window_end - self.period:
            self.granted = max(0, self.granted - 1)

    def observe(self, info: RateLimitInfo, now: float) -> None:
        """Take in the budget a response announced."""
        if info.limit is not None and info.limit > 0:
            self.limit = info.limit
        used = max(0, self.limit - info.remaining)
        if info.reset_epoch is not None and info.reset_epoch == self.window_reset:
            # The window we follow (the usual case). Should it have just ended, the
            # next _advance drops this report along with the rest of the window.
            if used > self.reported:
                self.reported = used
            return
        self._advance(now)
        if info.reset_epoch is None or info.reset_at is None:
            self.reported = max(self.reported, used)
            return
        if self.window_reset is not None and info.reset_epoch < self.window_reset:
            return  # a late answer from a window already over
        if info.reset_at + self.margin <= now:
            return  # it names a window that has already ended
        # A window we had not seen: count our grants since it began and those still in
        # flight from before (the server may count them in this window), and its view.
        start = info.reset_at - self.period
        self.granted = sum(1 for t in self.log if t >= start)
        self.granted += sum(1 for t in self.in_flight if t < start)
        self.reported = used
        self.window_reset = info.reset_epoch
        self.window_end = info.reset_at

    def pause(self, until: float) -> None:
        """Stop all grants until ``until`` (after a 429)."""
        self.paused_until = max(self.paused_until, until)

    def status(self, now: float) -> tuple[int, int, float | None]:
        """Return (limit, remaining, window end) for reporting."""
        remaining = max(0, self.limit - self.used(now))
        return self.limit, remaining, self.window_end


@attrs.define
class _Waiter:
    priority: Priority
    owner: object
    wake: asyncio.Future[None]


class BaseLimiter(abc.ABC):
    """Queues callers in priority order in front of a budget; subclasses hold the budget.

    Args:
        rate_limit: requests per ``rate_period`` before the server has said otherwise.
        rate_period: the window in seconds.
        pacing: ``"burst"`` spends what remains as fast as the concurrency cap allows;
            ``"smooth"`` spreads it evenly until Reset (for keys shared with others).
        bulk_reserve: the fraction of each window that bulk calls leave to interactive ones.
        clock: the time source (inject a fake one in tests).
    """

    #: How often a waiting head re-reads the budget; shared budgets change from outside.
    poll_seconds: float = math.inf

    def __init__(
        self,
        *,
        rate_limit: int = DEFAULT_RATE_LIMIT,
        rate_period: float = DEFAULT_RATE_PERIOD,
        pacing: Pacing = "burst",
        bulk_reserve: float = DEFAULT_BULK_RESERVE,
        reset_margin: float = DEFAULT_RESET_MARGIN,
        clock: Clock | None = None,
    ) -> None:
        if rate_limit < 1 or rate_period <= 0:
            raise ConfigurationError("rate_limit must be >= 1 and rate_period > 0")
        if not 0.0 <= bulk_reserve < 1.0:
            raise ConfigurationError("bulk_reserve is a fraction from 0 up to (not including) 1")
        if pacing not in ("burst", "smooth"):
            raise ConfigurationError(f"pacing is 'burst' or 'smooth', not {pacing!r}")
        self.rate_limit = rate_limit
        self.rate_period = rate_period
        self.pacing: Pacing = pacing
        self.bulk_reserve = bulk_reserve
        self.reset_margin = reset_margin
        self.clock: Clock = clock or SYSTEM_CLOCK
        self._queue: dict[Priority, deque[_Waiter]] = {"interactive": deque(), "bulk": deque()}
        self._ticket_ids: Iterator[str] = map(str, itertools.count())
        self._pacer: aiolimiter.AsyncLimiter | None = None
        self._pacer_interval = 0.0
        self._stats = {"requests_sent": 0, "waits": 0, "rate_limited": 0, "retries": 0}
        self._time_waited = 0.0

    # -- what a subclass provides -------------------------------------------------------

    @abc.abstractmethod
    async def _try_take(self, priority: Priority, ticket_id: str, now: float) -> float | None:
        """Take one grant and return None, or return the time more may be available."""

    def _take_nowait(self, priority: Priority, now: float) -> bool:
        """Take a grant without waiting, if the budget lives in this process."""
        return False

    @abc.abstractmethod
    async def _give_back(self, ticket: Ticket) -> None:
        """Undo the grant of a request that was never sent."""

    @abc.abstractmethod
    async def _finish(self, ticket: Ticket, info: RateLimitInfo | None) -> bool:
        """Take in a response's budget headers (if any) and end the ticket's flight.

        Return whether the server announced a larger limit than was assumed.
        """

    @abc.abstractmethod
    async def _pause(self, until: float) -> None:
        """Stop every grant until ``until`` (local epoch seconds)."""

    @abc.abstractmethod
    async def _snapshot(self, now: float) -> tuple[int, int, float | None]:
        """Return (limit, remaining, local window end)."""

    @abc.abstractmethod
    def _last_snapshot(self) -> tuple[int, int, float | None]:
        """Return (limit, remaining, local window end) without waiting."""

    # -- the public face ----------------------------------------------------------------

    def acquire_nowait(self, priority: Priority = "interactive") -> Ticket | None:
        """Return a ticket if one can be granted at once without waiting, else None.

        Only a budget held in this process can answer without waiting; nobody may be
        queued ahead, and smooth pacing always goes through :meth:`acquire`.
        """
        if self.pacing == "smooth" or self._queue["interactive"] or self._queue["bulk"]:
            return None
        now = self.clock.time()
        if not self._take_nowait(priority, now):
            return None
        self._stats["requests_sent"] += 1
        return Ticket(next(self._ticket_ids), now, priority)

    async def acquire(
        self,
        *,
        priority: Priority = "interactive",
        max_wait: float | None = None,
        owner: object = None,
    ) -> Ticket:
        """Wait for the right to send one request.

        Args:
            priority: interactive callers are served before waiting bulk callers, and
                bulk callers leave ``bulk_reserve`` of each window untouched.
            max_wait: seconds this call may wait for the budget; if the budget returns
                later than that, raise RateLimitError at once. None waits as long as needed.
            owner: who is asking (a Client); :meth:`cancel_waiters` wakes its waiters.

        Raises:
            RateLimitError: the wait would exceed ``max_wait``.
            ConfigurationError: the owner was closed while this call waited.
        """
        ticket = self.acquire_nowait(priority)
        if ticket is not None:
            return ticket
        if self.pacing == "smooth":
            await self._pace()
        start = self.clock.time()
        waiter = _Waiter(priority, owner, asyncio.get_running_loop().create_future())
        self._queue[priority].append(waiter)
        ticket_id = next(self._ticket_ids)
        waited = False
        try:
            while True:
                now = self.clock.time()
                if self._head() is waiter:
                    until = await self._try_take(priority, ticket_id, now)
                    if until is None:
                        self._stats["requests_sent"] += 1
                        return Ticket(id=ticket_id, granted_at=now, priority=priority)
                    if max_wait is not None and until - start > max_wait:
                        raise await self._budget_error(until, max_wait)
                    delay: float | None = min(until - now, self.poll_seconds)
                elif max_wait is not None:
                    # Queued behind others: give up once max_wait has passed.
                    delay = start + max_wait - now
                    if delay <= 0:
                        raise await self._budget_error(None, max_wait)
                else:
                    delay = None
                if not waited:
                    waited = True
                    self._stats["waits"] += 1
                await self._sleep(waiter, delay)
        finally:
            self._queue[priority].remove(waiter)
            if waited:
                self._time_waited += self.clock.time() - start
            next_head = self._head()
            if next_head is not None and not next_head.wake.done():
                next_head.wake.set_result(None)

    async def release(self, ticket: Ticket, info: RateLimitInfo | None = None) -> None:
        """End a ticket whose request was sent, with the budget its answer announced."""
        if not self.release_nowait(ticket, info) and await self._finish(ticket, info):
            self._wake_head()

    def release_nowait(self, ticket: Ticket, info: RateLimitInfo | None = None) -> bool:
        """Do :meth:`release` at once if the budget lives in this process; else return False."""
        return False

    async def refund(self, ticket: Ticket) -> None:
        """Give back a ticket whose request certainly never reached the server."""
        self._stats["requests_sent"] -= 1
        await self._give_back(ticket)
        self._wake_head()

    async def rate_limited(self, retry_after: float | None, info: RateLimitInfo | None) -> None:
        """Pause every caller after a 429, until Retry-After, else Reset, else one period."""
        self._stats["rate_limited"] += 1
        now = self.clock.time()
        if retry_after is not None:
            until = now + retry_after
        elif info is not None and info.reset_at is not None:
            until = info.reset_at
        else:
            until = now + self.rate_period
        await self._pause(until)

    def note_retry(self) -> None:
        """Count a retried request (for :meth:`statistics`)."""
        self._stats["retries"] += 1

    async def statistics(self) -> RateLimitStatus:
        """Return the budget as the limiter's store sees it, and this process's counters."""
        return self._status(*await self._snapshot(self.clock.time()))

    def statistics_nowait(self) -> RateLimitStatus:
        """Return the budget as last seen by this process, and its counters."""
        return self._status(*self._last_snapshot())

    def _status(self, limit: int, remaining: int, window_end: float | None) -> RateLimitStatus:
        return RateLimitStatus(
            limit=limit,
            remaining=remaining,
            reset_at=datetime.fromtimestamp(window_end, timezone.utc) if window_end else None,
            time_waited=self._time_waited,
            **self._stats,
        )

    def cancel_waiters(self, owner: object) -> None:
        """Wake every caller of ``owner`` that waits for the budget, with an error."""
        for queue in self._queue.values():
            for waiter in queue:
                if waiter.owner is owner and not waiter.wake.done():
                    waiter.wake.set_exception(
                        ConfigurationError("the client was closed while this call waited")
                    )

    # -- internals ----------------------------------------------------------------------

    def _head(self) -> _Waiter | None:
        return next((q[0] for q in self._queue.values() if q), None)

    def _wake_head(self) -> None:
        head = self._head()
        if head is not None and not head.wake.done():
            head.wake.set_result(None)

    async def _sleep(self, waiter: _Waiter, delay: float | None) -> None:
        if waiter.wake.done():
            waiter.wake.result()  # raises if the owner was closed
            waiter.wake = asyncio.get_running_loop().create_future()
            return
        if delay is not None and delay <= 0:
            await asyncio.sleep(0)
            return
        if delay is None or isinstance(self.clock, SystemClock):
            await asyncio.wait({waiter.wake}, timeout=delay)
        else:
            sleeper = asyncio.ensure_future(self.clock.sleep(delay))
            try:
                await asyncio.wait({waiter.wake, sleeper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                await asyncio.gather(sleeper, return_exceptions=True)
        if waiter.wake.done():
            waiter.wake.result()
            waiter.wake = asyncio.get_running_loop().create_future()

    async def _budget_error(self, until: float | None, max_wait: float) -> RateLimitError:
        limit, remaining, window_end = await self._snapshot(self.clock.time())
        if until is None:
            until = window_end if window_end is not None else self.clock.time() + max_wait
        wait = max(0.0, until - self.clock.time())
        reset_at = datetime.fromtimestamp(until, timezone.utc)
        return RateLimitError(
            f"the request budget is spent ({remaining} of {limit} left) and returns at "
            f"{reset_at:%Y-%m-%d %H:%M:%S} UTC, in {wait:.1f} s, later than max_wait="
            f"{max_wait:g} s allows; wait and try again, or raise max_wait",
            status=0,
            retry_after=wait,
            reset_at=reset_at,
            limit=limit,
            remaining=remaining,
        )

    async def _pace(self) -> None:
        now = self.clock.time()
        limit, remaining, window_end = await self._snapshot(now)
        horizon = (window_end - now) if window_end and window_end > now else self.rate_period
        interval = horizon / max(1, remaining if window_end else limit)
        # aiolimiter fixes its rate when built: build a new one when the pace drifts.
        if self._pacer is None or abs(interval - self._pacer_interval) > 0.25 * interval:
            self._pacer = aiolimiter.AsyncLimiter(1, interval)
            self._pacer_interval = interval
        await self._pacer.acquire()


class LocalLimiter(BaseLimiter):
    """A limiter for one process: the budget lives in memory.

    Every ``Client`` of one (base URL, API key) in a process shares one of these unless
    it is given its own ``limiter=``. Takes the arguments of :class:`BaseLimiter`.
    """

    @functools.cached_property
    def _budget(self) -> Budget:
        return Budget(
            limit=self.rate_limit,
            period=self.rate_period,
            bulk_reserve=self.bulk_reserve,
            margin=self.reset_margin,
        )

    def _take_nowait(self, priority: Priority, now: float) -> bool:
        return self._budget.try_take(now, priority)

    async def _try_take(self, priority: Priority, ticket_id: str, now: float) -> float | None:
        return None if self._take_nowait(priority, now) else self._budget.next_refill(now)

    async def _give_back(self, ticket: Ticket) -> None:
        self._budget.give_back(ticket.granted_at)

    def release_nowait(self, ticket: Ticket, info: RateLimitInfo | None = None) -> bool:
        """End a ticket whose request was sent, with the budget its answer announced."""
        if self._finish_nowait(ticket, info):
            self._wake_head()
        return True

    async def _finish(self, ticket: Ticket, info: RateLimitInfo | None) -> bool:
        return self._finish_nowait(ticket, info)

    def _finish_nowait(self, ticket: Ticket, info: RateLimitInfo | None) -> bool:
        limit = self._budget.limit
        if info is not None:
            self._budget.observe(info, self.clock.time())
        self._budget.finish(ticket.granted_at)
        return self._budget.limit > limit

    async def _pause(self, until: float) -> None:
        self._budget.pause(until)

    async def _snapshot(self, now: float) -> tuple[int, int, float | None]:
        return self._budget.status(now)

    def _last_snapshot(self) -> tuple[int, int, float | None]:
        return self._budget.status(self.clock.time())

    def __repr__(self) -> str:
        return (
            f"LocalLimiter(rate_limit={self.rate_limit}, rate_period={self.rate_period}, "
            f"pacing={self.pacing!r})"
        )
