"""The limiter: one queue of callers in front of a budget store, handing out grants.

A :class:`Grant` is one attempt's right to send: a budget token from the store and a
concurrency slot of the client. It knows whether its request left and which budget the
answer announced, and it alone ends the attempt, once: a request that left is released
with what the server reported; one that never left gives its token back.

:class:`BaseLimiter` queues callers (interactive before bulk, FIFO within a priority)
over a store of the budget (:class:`BudgetStore`). :class:`LocalLimiter` keeps the
budget in this process (:class:`MemoryStore`); ``RedisLimiter`` in
:mod:`cloudonex_async.limiters` keeps it in Redis for many processes. The window rules
live in :mod:`cloudonex_async._budget`.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections import deque
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from types import TracebackType
from typing import Literal, Protocol

import attrs

from ._budget import (
    DEFAULT_RESET_MARGIN,
    Budget,
    BudgetSnapshot,
    Pacing,
    Priority,
    reserve_size,
)
from ._clock import SYSTEM_CLOCK, Clock, SystemClock
from ._config import (
    DEFAULT_BULK_RESERVE,
    DEFAULT_RATE_LIMIT,
    DEFAULT_RATE_PERIOD,
    check_budget_settings,
)
from ._protocol import RateLimitInfo
from .errors import ConfigurationError, RateLimitError

__all__ = [
    "BaseLimiter",
    "BudgetStore",
    "Grant",
    "LocalLimiter",
    "MemoryStore",
    "Pacing",
    "Priority",
    "RateLimitStatus",
    "Slots",
    "reserve_size",
]

WaitPhase = Literal["started", "ended"]
OnWait = Callable[[WaitPhase, float], object]


@attrs.frozen(kw_only=True)
class RateLimitStatus:
    """A snapshot of the budget and of what the limiter has done so far.

    Attributes:
        limit: requests per window. remaining: what the limiter believes is left.
        reset_at: when the current window ends (UTC), once the server announced it.
        window_seconds: the window's length (the server's, once learned).
        reserve: requests of each window that bulk work leaves to interactive calls.
        requests_sent, waits, time_waited (seconds), rate_limited (429s seen), retries.
    """

    limit: int
    remaining: int
    reset_at: datetime | None
    window_seconds: float = DEFAULT_RATE_PERIOD
    reserve: int = 0
    requests_sent: int = 0
    waits: int = 0
    time_waited: float = 0.0
    rate_limited: int = 0
    retries: int = 0


class BudgetStore(Protocol):
    """Where one key's budget lives. Each method is one atomic step of the rules."""

    async def take(self, priority: Priority, grant_id: str, now: float) -> float | None:
        """Count one grant and return None, or return the local time to try again."""

    async def give_back(self, grant_id: str, granted_at: float, now: float) -> None:
        """Undo the grant of a request that was never sent."""

    async def finish(
        self, grant_id: str, granted_at: float, info: RateLimitInfo | None, now: float
    ) -> None:
        """End a sent request's flight and take in the budget its answer announced."""

    async def pause(self, until: float, now: float) -> None:
        """Stop every grant until ``until`` (local epoch seconds)."""

    async def snapshot(self, now: float) -> BudgetSnapshot:
        """Return the budget as the store sees it now."""

    def last_snapshot(self) -> BudgetSnapshot:
        """Return the budget as last seen, without waiting."""


class MemoryStore:
    """A budget store in this process's memory: a :class:`~._budget.Budget`."""

    def __init__(self, budget: Budget, clock: Clock) -> None:
        self.budget = budget
        self._clock = clock

    async def take(self, priority: Priority, grant_id: str, now: float) -> float | None:
        """See :class:`BudgetStore`."""
        return self.budget.try_take(now, priority)

    async def give_back(self, grant_id: str, granted_at: float, now: float) -> None:
        """See :class:`BudgetStore`."""
        self.budget.give_back(granted_at)

    async def finish(
        self, grant_id: str, granted_at: float, info: RateLimitInfo | None, now: float
    ) -> None:
        """See :class:`BudgetStore`."""
        self.budget.finish(granted_at, info, now)

    async def pause(self, until: float, now: float) -> None:
        """See :class:`BudgetStore`."""
        self.budget.pause(until)

    async def snapshot(self, now: float) -> BudgetSnapshot:
        """See :class:`BudgetStore`."""
        return self.budget.snapshot(now)

    def last_snapshot(self) -> BudgetSnapshot:
        """See :class:`BudgetStore`."""
        return self.budget.snapshot(self._clock.time())


class Slots:
    """A client's concurrency slots: at most ``size`` requests in flight at once.

    Waiters are served interactive first, FIFO within a priority. A slot is taken after
    the budget token, so bulk work waiting for the budget never holds a slot that an
    interactive call needs.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.free = size
        self._queued = 0  # futures in _waiters (done ones included), for cheap checks
        self._waiters: dict[Priority, deque[asyncio.Future[None]]] = {
            "interactive": deque(),
            "bulk": deque(),
        }

    @property
    def waiting(self) -> int:
        """How many callers wait for a slot."""
        return sum(1 for q in self._waiters.values() for w in q if not w.done())

    def take_nowait(self) -> bool:
        """Take a slot if one is free and nobody waits; return whether it did."""
        if self.free > 0 and not self._queued:
            self.free -= 1
            return True
        return False

    async def take(self, priority: Priority) -> None:
        """Wait for a slot (cancellable)."""
        if self.take_nowait():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._waiters[priority]
        queue.append(waiter)
        self._queued += 1
        try:
            await waiter
        except BaseException:
            if waiter in queue:
                queue.remove(waiter)
                self._queued -= 1
            elif waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot just as the wait was cancelled: pass it on
            raise

    def release(self) -> None:
        """Give a slot back, to the first waiter if there is one."""
        if self._queued:
            for queue in self._waiters.values():
                while queue:
                    waiter = queue.popleft()
                    self._queued -= 1
                    if not waiter.done():
                        waiter.set_result(None)
                        return
        self.free += 1


class Grant:
    """One attempt's right to send a request: a budget token and a concurrency slot.

    ``async with grant:`` around the attempt ends it on the way out, once: if the
    request left (``sent``), the budget is released with the headers its answer carried
    (``budget``); if it never left, the token is given back. The slot is released
    either way, cancellation included.
    """

    __slots__ = (
        "_ended",
        "_limiter",
        "_slots",
        "answered",
        "budget",
        "granted_at",
        "id",
        "priority",
        "sent",
    )

    def __init__(
        self,
        limiter: BaseLimiter,
        slots: Slots | None,
        grant_id: str,
        granted_at: float,
        priority: Priority,
    ) -> None:
        self._limiter = limiter
        self._slots = slots
        self.id = grant_id
        self.granted_at = granted_at
        self.priority: Priority = priority
        #: Whether the request may have left (set just before it is handed to the transport).
        self.sent = False
        #: Whether an answer came back (with or without budget headers).
        self.answered = False
        #: The budget the answer announced, if any.
        self.budget: RateLimitInfo | None = None
        self._ended = False

    def __repr__(self) -> str:
        return f"Grant(priority={self.priority!r}, sent={self.sent})"

    async def __aenter__(self) -> Grant:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.end_nowait():
            await asyncio.shield(self.end())

    def end_nowait(self) -> bool:
        """End the attempt at once if the budget lives in this process; else return False."""
        if self._ended:
            return True
        limiter = self._limiter
        budget = limiter._budget
        if budget is None:
            return False
        self._ended = True
        slots = self._slots
        if slots is not None:
            if slots._queued:
                slots.release()
            else:
                slots.free += 1
        if self.sent:
            budget.finish(self.granted_at, self.budget, limiter.clock.time())
        else:
            limiter._stats["requests_sent"] -= 1
            budget.give_back(self.granted_at)
        # After the budget took the answer in: it may have named the window (the first
        # answer), moved it (a Reset sooner than was guessed) or freed a token.
        if not limiter._answered:
            limiter._first_answer(self)
        elif limiter._queue["interactive"] or limiter._queue["bulk"]:
            limiter._wake_head()
        return True

    async def end(self) -> None:
        """End the attempt (release or give back, and free the slot); idempotent."""
        if not self._ended:
            await self._limiter._end(self)


@attrs.define
class _Waiter:
    priority: Priority
    owner: object
    wake: asyncio.Future[None]
    slots: Slots | None = None
    grant: Grant | None = None  # handed over by _wake_head, before this caller runs again
    queued: bool = True


class BaseLimiter:
    """Queues callers in priority order in front of a budget store and hands out grants.

    Args:
        store: where the budget lives (see :class:`BudgetStore`).
        rate_limit: requests per ``rate_period`` before the server has said otherwise.
        rate_period: the window in seconds, until the server's is known.
        pacing: ``"burst"`` spends what remains as fast as the concurrency cap allows;
            ``"smooth"`` spreads it evenly until Reset (for keys shared with others).
        bulk_reserve: the fraction of each window that bulk calls leave to interactive ones.
        clock: the time source (inject a fake one in tests).
    """

    #: How often a waiting head re-reads the budget; a shared store changes from outside.
    poll_seconds: float = math.inf

    def __init__(
        self,
        store: BudgetStore,
        *,
        rate_limit: int = DEFAULT_RATE_LIMIT,
        rate_period: float = DEFAULT_RATE_PERIOD,
        pacing: Pacing = "burst",
        bulk_reserve: float = DEFAULT_BULK_RESERVE,
        reset_margin: float = DEFAULT_RESET_MARGIN,
        clock: Clock | None = None,
    ) -> None:
        check_budget_settings(rate_limit, rate_period, pacing, bulk_reserve)
        self.rate_limit = rate_limit
        self.rate_period = rate_period
        self.pacing: Pacing = pacing
        self.bulk_reserve = bulk_reserve
        self.reset_margin = reset_margin
        self.clock: Clock = clock or SYSTEM_CLOCK
        self.store = store
        # The budget itself, when it lives in this process: grants then need no await.
        self._budget = store.budget if isinstance(store, MemoryStore) else None
        self._queue: dict[Priority, deque[_Waiter]] = {"interactive": deque(), "bulk": deque()}
        self._grant_ids: Iterator[str] = map(str, itertools.count())
        # Until an answer has told this limiter the server's window, one request goes at
        # a time: a burst sent blind could overflow a window smaller than rate_limit.
        self._answered = False
        self._probing = False
        self._stats = {"requests_sent": 0, "waits": 0, "rate_limited": 0, "retries": 0}
        self._time_waited = 0.0

    def settings(self) -> tuple[int, float, str, float, Clock]:
        """The settings a Client's own must match to share this limiter."""
        return (self.rate_limit, self.rate_period, self.pacing, self.bulk_reserve, self.clock)

    # -- grants ---------------------------------------------------------------------------

    def grant_nowait(
        self, priority: Priority = "interactive", slots: Slots | None = None
    ) -> Grant | None:
        """Return a grant at once if the budget and a slot allow it without waiting, else None.

        Only a budget held in this process can answer without waiting, and nobody may be
        queued ahead.
        """
        budget = self._budget
        if budget is None or self._queue["interactive"] or self._queue["bulk"]:
            return None
        if not self._answered and self._probing:
            return None
        if slots is not None and (slots.free <= 0 or slots._queued):
            return None
        now = self.clock.time()
        if budget.try_take(now, priority) is not None:
            return None
        if slots is not None:
            slots.free -= 1
        self._stats["requests_sent"] += 1
        self._probing = not self._answered
        return Grant(self, slots, "", now, priority)

    async def grant(
        self,
        *,
        priority: Priority = "interactive",
        max_wait: float | None = None,
        owner: object = None,
        slots: Slots | None = None,
        on_wait: OnWait | None = None,
    ) -> Grant:
        """Wait for the right to send one request: a concurrency slot and a budget token.

        Callers queue in priority order. The one at the head first gets a slot of its
        client, then takes a budget token while holding it: a token is never taken
        before its request can leave, so none goes stale while a slot is awaited. If the
        budget says no, the slot is given back and the head waits for the budget.

        Args:
            priority: interactive callers are served before waiting bulk callers, and
                bulk callers leave ``bulk_reserve`` of each window untouched.
            max_wait: seconds this call may wait for the budget; if the budget returns
                later than that, raise RateLimitError at once. None waits as long as needed.
            owner: who is asking (a Client); :meth:`cancel_waiters` wakes its waiters.
            slots: the caller's concurrency slots.
            on_wait: called with ``("started", 0.0)`` when the call has to wait for the
                budget and ``("ended", seconds)`` when it got it.

        Raises:
            RateLimitError: the wait would exceed ``max_wait``.
            ConfigurationError: the owner was closed while this call waited.
        """
        grant = self.grant_nowait(priority, slots)
        if grant is not None:
            return grant
        start = self.clock.time()
        waiter = _Waiter(priority, owner, asyncio.get_running_loop().create_future(), slots)
        self._queue[priority].append(waiter)
        grant_id = next(self._grant_ids)
        holding_slot = False
        waited = False
        delay: float | None
        try:
            while True:
                if waiter.grant is not None:  # handed over while this caller slept
                    granted, waiter.grant = waiter.grant, None
                    return granted
                now = self.clock.time()
                if self._head() is waiter and not self._answered and self._probing:
                    delay = None  # the first answer is on its way: it names the window
                elif self._head() is waiter:
                    if slots is not None and not holding_slot:
                        # Concurrency first, while holding the head of the queue.
                        await slots.take(priority)
                        holding_slot = True
                        now = self.clock.time()
                    until = await self._take(priority, grant_id, now)
                    if until is None:
                        self._stats["requests_sent"] += 1
                        self._probing = not self._answered
                        holding_slot = False  # it goes with the grant
                        return Grant(self, slots, grant_id, now, priority)
                    if holding_slot and slots is not None:
                        slots.release()
                        holding_slot = False
                    if max_wait is not None and until - start > max_wait:
                        raise await self._budget_error(until, max_wait)
                    delay = min(until - now, self.poll_seconds)
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
                    if on_wait is not None:
                        on_wait("started", 0.0)
                await self._sleep(waiter, delay)
        finally:
            if waiter.grant is not None:  # handed a grant, but leaving without it
                waiter.grant.end_nowait()  # never sent: its token and slot go back
            if holding_slot and slots is not None:
                slots.release()
            if waiter.queued:
                self._queue[priority].remove(waiter)
            if waited:
                seconds = self.clock.time() - start
                self._time_waited += seconds
                if on_wait is not None:
                    on_wait("ended", seconds)
            self._wake_head()

    async def rate_limited(self, retry_after: float | None, info: RateLimitInfo | None) -> None:
        """Pause every caller after a 429, until Retry-After, else Reset, else one window."""
        self._stats["rate_limited"] += 1
        now = self.clock.time()
        if retry_after is not None:
            until = now + retry_after
        elif info is not None and info.reset_at is not None:
            until = info.reset_at
        else:
            until = now + self.store.last_snapshot().window_seconds
        await self.store.pause(until, now)

    def note_retry(self) -> None:
        """Count a retried request (for :meth:`statistics`)."""
        self._stats["retries"] += 1

    async def statistics(self) -> RateLimitStatus:
        """Return the budget as the store sees it, and this process's counters."""
        return self._status(await self.store.snapshot(self.clock.time()))

    def statistics_nowait(self) -> RateLimitStatus:
        """Return the budget as last seen by this process, and its counters."""
        return self._status(self.store.last_snapshot())

    def cancel_waiters(self, owner: object) -> None:
        """Wake every caller of ``owner`` that waits for the budget, with an error."""
        for queue in self._queue.values():
            for waiter in queue:
                if waiter.owner is owner and not waiter.wake.done():
                    waiter.wake.set_exception(
                        ConfigurationError("the client was closed while this call waited")
                    )

    # -- ending a grant (called by Grant) ---------------------------------------------------

    def _first_answer(self, grant: Grant) -> None:
        """Leave the one-at-a-time start once a request got an answer (or let another try)."""
        if not self._answered:
            self._answered = grant.answered
            self._probing = False
            self._wake_head()

    async def _end(self, grant: Grant) -> None:
        if grant.end_nowait():
            return
        grant._ended = True
        if grant._slots is not None:
            grant._slots.release()
        now = self.clock.time()
        if grant.sent:
            await self.store.finish(grant.id, grant.granted_at, grant.budget, now)
        else:
            self._stats["requests_sent"] -= 1
            await self.store.give_back(grant.id, grant.granted_at, now)
        if not self._answered:
            self._first_answer(grant)
        else:
            self._wake_head()

    # -- waiting for the budget ----------------------------------------------------------

    async def _take(self, priority: Priority, grant_id: str, now: float) -> float | None:
        return await self.store.take(priority, grant_id, now)

    def _head(self) -> _Waiter | None:
        return next((q[0] for q in self._queue.values() if q), None)

    def _wake_head(self) -> None:
        """Hand grants to queued callers, in order, while the budget allows; wake the next.

        With the budget in this process, grants go straight to the callers at the head of
        the queue, as many as the budget and their slots allow: waking them one by one,
        one per turn of the event loop, would keep the queue (and every newcomer behind
        it) waiting under steady load. The first that cannot be served is woken to look
        for itself (it may need a slot, or a store that answers asynchronously).
        """
        budget = self._budget
        while (head := self._head()) is not None and not head.wake.done():
            slots = head.slots
            if (
                budget is not None
                and (self._answered or not self._probing)
                and (slots is None or (slots.free > 0 and not slots._queued))
            ):
                now = self.clock.time()
                if budget.try_take(now, head.priority) is None:
                    if slots is not None:
                        slots.free -= 1
                    self._stats["requests_sent"] += 1
                    self._probing = not self._answered
                    head.grant = Grant(self, slots, "", now, head.priority)
                    self._queue[head.priority].popleft()
                    head.queued = False
                    head.wake.set_result(None)
                    continue
            head.wake.set_result(None)
            return

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
        snapshot = await self.store.snapshot(self.clock.time())
        now = self.clock.time()
        if until is None:
            until = snapshot.window_end if snapshot.window_end is not None else now + max_wait
        wait = max(0.0, until - now)
        reset_at = datetime.fromtimestamp(until, timezone.utc)
        return RateLimitError(
            f"the request budget is spent ({snapshot.remaining} of {snapshot.limit} left) "
            f"and returns at {reset_at:%Y-%m-%d %H:%M:%S} UTC, in {wait:.1f} s, later than "
            f"max_wait={max_wait:g} s allows; wait and try again, or raise max_wait",
            status=0,
            retry_after=wait,
            reset_at=reset_at,
            limit=snapshot.limit,
            remaining=snapshot.remaining,
        )

    def _status(self, snapshot: BudgetSnapshot) -> RateLimitStatus:
        end = snapshot.window_end
        return RateLimitStatus(
            limit=snapshot.limit,
            remaining=snapshot.remaining,
            reset_at=datetime.fromtimestamp(end, timezone.utc) if end is not None else None,
            window_seconds=snapshot.window_seconds,
            reserve=snapshot.reserve,
            time_waited=self._time_waited,
            **self._stats,
        )


class LocalLimiter(BaseLimiter):
    """A limiter for one process: the budget lives in memory.

    Every ``Client`` of one (base URL, API key) in a process shares one of these unless
    it is given its own ``limiter=``. Takes the settings of :class:`BaseLimiter`.
    """

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
        check_budget_settings(rate_limit, rate_period, pacing, bulk_reserve)
        clock = clock or SYSTEM_CLOCK
        budget = Budget(
            limit=rate_limit,
            period=rate_period,
            bulk_reserve=bulk_reserve,
            smooth=pacing == "smooth",
            margin=reset_margin,
        )
        super().__init__(
            MemoryStore(budget, clock),
            rate_limit=rate_limit,
            rate_period=rate_period,
            pacing=pacing,
            bulk_reserve=bulk_reserve,
            reset_margin=reset_margin,
            clock=clock,
        )

    def __repr__(self) -> str:
        return (
            f"LocalLimiter(rate_limit={self.rate_limit}, rate_period={self.rate_period}, "
            f"pacing={self.pacing!r})"
        )
