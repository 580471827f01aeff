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
import logging
import math
import sys
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
from .errors import BudgetStoreError, ConfigurationError, PoolTimeoutError, RateLimitError

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

logger = logging.getLogger("cloudonex_async")
WaitPhase = Literal["started", "ended"]
OnWait = Callable[[WaitPhase, float], object]


@attrs.frozen(kw_only=True)
class RateLimitStatus:
    """A snapshot of the budget and of what the limiter has done so far.

    Attributes:
        limit: requests per window.
        remaining: what the limiter believes is left.
        reset_at: when the current window ends (UTC), once the server announced it.
        window_seconds: the window's length, the best figure known: the server's once
            two Resets have told it; after one Reset, an estimate (the configured
            ``rate_period`` if the server announced the configured ``rate_limit`` and
            a Reset within that period, else twice the time that Reset was ahead);
            before any, the configured ``rate_period``.
        window_confirmed: True once two successive Resets have told the window's
            length, so ``window_seconds`` is the server's; False while it is an
            estimate or the configured period.
        reserve: requests of each window that bulk work leaves to interactive calls.
        requests_sent: requests sent through this limiter.
        waits: calls that had to wait for the budget.
        time_waited: seconds spent waiting for the budget, in all.
        rate_limited: 429 answers seen.
        retries: attempts retried.
    """

    limit: int
    remaining: int
    reset_at: datetime | None
    window_seconds: float = DEFAULT_RATE_PERIOD
    window_confirmed: bool = False
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

    A caller with no free slot waits in its limiter's queue, with the callers waiting
    for the budget, and is passed over while its client has none: a Client with free
    slots never waits behind another Client's callers. The slot is taken together with
    the budget token, so a caller waiting for either holds neither.
    """

    __slots__ = ("free", "size", "waiting")

    def __init__(self, size: int) -> None:
        self.size = size
        self.free = size
        #: This client's callers queued in the limiter (for the budget or for a slot).
        self.waiting = 0


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
        "failed",
        "granted_at",
        "id",
        "priority",
        "probe",
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
        #: Whether the attempt was made and ended without an answer (a transport error).
        self.failed = False
        #: The budget the answer announced, if any.
        self.budget: RateLimitInfo | None = None
        #: Whether this is the request whose answer will name the server's window.
        self.probe = False
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
        if self._slots is not None:
            self._slots.free += 1
        if self.sent:
            budget.finish(self.granted_at, self.budget, limiter.clock.time())
        else:
            limiter._stats["requests_sent"] -= 1
            budget.give_back(self.granted_at)
        if limiter._learning or limiter._queued:  # else _grant_ended has nothing to do
            limiter._grant_ended(self)
        return True

    async def end(self) -> None:
        """End the attempt (release or give back, and free the slot); idempotent."""
        if not self._ended:
            await self._limiter._end(self)


@attrs.define(eq=False)
class _Waiter:
    priority: Priority
    owner: object
    wake: asyncio.Future[None]
    slots: Slots
    deadline: float  # give up here (max_wait); math.inf: never
    seq: int  # arrival order, across the clients of the limiter
    reserved: bool = False  # holds a slot while it asks an asynchronous store
    closed: bool = False  # its client was closed
    grant: Grant | None = None  # handed over by _wake_head, before this caller runs again
    queued: bool = False


_RANK: dict[Priority, int] = {"interactive": 0, "bulk": 1}


#: What a call of a closed client that had not been sent yet raises (as ConfigurationError).
CLOSED_WHILE_WAITING = (
    "the client was closed while this call waited for the budget or a slot; nothing "
    "was sent (create a new Client to send it)"
)


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
        # Callers waiting for a grant, per client (its Slots) and priority, in arrival
        # order: the next to serve is the earliest, interactive first, of the clients
        # with a free slot, found without walking past another client's queue.
        self._queues: dict[Slots, dict[Priority, deque[_Waiter]]] = {}
        self._queued = 0  # callers in _queues
        self._holding: set[_Waiter] = set()  # callers holding back for the first answer
        self._unbounded = Slots(sys.maxsize)  # the slots of callers that bring none
        self._seq = itertools.count()
        self._grant_ids: Iterator[str] = map(str, itertools.count())
        # Until the first answer names the server's window, the callers that may wait
        # hold back while one request is on its way: a burst sent blind could overflow a
        # window smaller than rate_limit. The hold ends with that request, answered or
        # not, and each caller's own hold_limit and max_wait bound it.
        self._learning = True
        self._probe_out = False
        self._refill_at = 0.0  # when the budget last said it returns (local epoch seconds)
        self._unreported: list[tuple[str, float, RateLimitInfo | None, bool]] = []
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
        if budget is None or self._queued:
            return None
        if self._probe_out and self._learning:
            return None
        if slots is not None and slots.free <= 0:
            return None
        now = self.clock.time()
        if budget.try_take(now, priority) is not None:
            return None
        # _new_grant, inlined: this is every request's path while the budget allows.
        if slots is not None:
            slots.free -= 1
        self._stats["requests_sent"] += 1
        grant = Grant(self, slots, "", now, priority)
        if self._learning:  # and no probe is out (see above): this one learns the window
            self._probe_out = grant.probe = True
        return grant

    async def grant(
        self,
        *,
        priority: Priority = "interactive",
        max_wait: float | None = None,
        owner: object = None,
        slots: Slots | None = None,
        on_wait: OnWait | None = None,
        hold_limit: float | None = None,
    ) -> Grant:
        """Wait for the right to send one request: a concurrency slot and a budget token.

        Callers queue in priority order (interactive first, FIFO within a priority). A
        caller whose client has no free slot is passed over until one frees; the first
        that can go takes a budget token and its slot together, so no token goes stale
        while a slot is awaited and no Client waits behind another's slots.

        Args:
            priority: interactive callers are served before waiting bulk callers, and
                bulk callers leave ``bulk_reserve`` of each window untouched.
            max_wait: seconds this call may wait before its request leaves (for the
                budget, a slot, or the server's first answer). If the budget returns
                later than that, it raises at once; 0 never waits. None: no bound.
            owner: who is asking (a Client); :meth:`cancel_waiters` wakes its waiters.
            slots: the caller's concurrency slots.
            on_wait: called with ``("started", 0.0)`` when the call has to wait and
                ``("ended", seconds)`` when it got its grant or gave up.
            hold_limit: seconds this call may hold back for the server's first answer
                (None: up to ``max_wait``); after that it goes without it.

        Raises:
            RateLimitError: the budget returns later than ``max_wait`` allows.
            PoolTimeoutError: no slot came free within ``max_wait``.
            BudgetStoreError: the budget store failed; nothing was sent.
            ConfigurationError: the owner was closed while this call waited.
        """
        grant = self.grant_nowait(priority, slots)
        if grant is not None:
            return grant
        if max_wait == 0:
            return await self._grant_now(priority, slots)
        clock = self.clock
        start = clock.time()
        patience = math.inf if max_wait is None else max_wait
        deadline = start + patience
        own = slots if slots is not None else self._unbounded
        waiter = _Waiter(
            priority,
            owner,
            asyncio.get_running_loop().create_future(),
            own,
            deadline,
            next(self._seq),
        )
        grant_id = next(self._grant_ids)
        waited = False
        try:
            if self._learning and self._probe_out:
                waited = True
                self._note_wait(on_wait)
                hold = patience if hold_limit is None else min(patience, hold_limit)
                await self._hold(waiter, start + hold)
            if not waiter.queued and waiter.grant is None:  # (the hold's end may have)
                self._enqueue(waiter)
            while True:
                if waiter.closed:
                    raise ConfigurationError(CLOSED_WHILE_WAITING)
                if waiter.grant is not None:  # handed over while this caller slept
                    granted, waiter.grant = waiter.grant, None
                    return granted
                now = clock.time()
                state = self._state(waiter)
                wake_at: float
                if state == "go":
                    own.free -= 1
                    waiter.reserved = True
                    # Taken before the store is asked: callers arriving meanwhile hold back.
                    probe = self._learning and not self._probe_out
                    self._probe_out = self._probe_out or probe
                    try:
                        until = await self._take(priority, grant_id, now)
                    except BaseException:
                        if probe:
                            self._release_probe()
                        raise
                    if until is None:
                        waiter.reserved = False
                        self._dequeue(waiter)
                        return self._new_grant(
                            own, grant_id, now, priority, slot_taken=True, probe=probe
                        )
                    if probe:
                        self._release_probe()
                    own.free += 1
                    waiter.reserved = False
                    if until > deadline:
                        raise await self._budget_error(until, patience, priority)
                    if until != self._refill_at:
                        self._refill_at = until
                        self._wake_doomed(until)
                    wake_at = min(until, now + self.poll_seconds)
                elif now >= deadline:
                    if state == "slot":
                        raise _slots_error(own, patience)
                    raise await self._budget_error(self._refill_after(now), patience, priority)
                elif state == "behind" and self._refill_after(now) > deadline:
                    raise await self._budget_error(self._refill_at, patience, priority)
                else:
                    wake_at = deadline
                if not waited:
                    waited = True
                    self._note_wait(on_wait)
                await self._sleep(waiter, None if wake_at == math.inf else wake_at - now)
        finally:
            self._holding.discard(waiter)
            self._dequeue(waiter)
            if waiter.reserved:
                own.free += 1
            handed, waiter.grant = waiter.grant, None
            if handed is not None:  # handed a grant, but leaving without it
                handed.end_nowait()  # never sent: its token and slot go back
            self._wake_head()
            if waited:
                seconds = clock.time() - start
                self._time_waited += seconds
                if on_wait is not None:
                    try:
                        on_wait("ended", seconds)
                    except Exception:
                        logger.warning("on_wait failed", exc_info=True)

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
        try:
            await self.store.pause(until, now)
        except Exception:  # the 429 is still reported; the store learns of the next
            logger.warning("the budget store failed to record a pause after a 429", exc_info=True)

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
        """Wake every caller of ``owner`` waiting for the budget or a slot, with an error."""
        for waiter in [*self._holding, *self._waiters()]:
            if waiter.owner is owner and not waiter.closed:
                waiter.closed = True
                if not waiter.wake.done():
                    waiter.wake.set_result(None)

    # -- handing out and ending grants -----------------------------------------------------

    def _new_grant(
        self,
        slots: Slots | None,
        grant_id: str,
        now: float,
        priority: Priority,
        *,
        slot_taken: bool = False,
        probe: bool = False,
    ) -> Grant:
        if slots is not None and not slot_taken:
            slots.free -= 1
        self._stats["requests_sent"] += 1
        grant = Grant(self, slots, grant_id, now, priority)
        if probe or (self._learning and not self._probe_out):
            self._probe_out = grant.probe = True
        return grant

    async def _grant_now(self, priority: Priority, slots: Slots | None) -> Grant:
        """``max_wait=0``: a grant if the budget and a slot allow it now, else raise at once.

        Such a caller never waits, so it neither holds back for the first answer nor
        queues: it goes whenever the budget (as announced, or as configured before the
        first answer) allows.
        """
        if slots is not None and slots.free <= 0:
            raise _slots_error(slots, 0.0)
        now = self.clock.time()
        grant_id = "" if self._budget is not None else next(self._grant_ids)
        if slots is not None:
            slots.free -= 1
        try:
            until = await self._take(priority, grant_id, now)
        finally:
            if slots is not None:
                slots.free += 1
        if until is None:
            return self._new_grant(slots, grant_id, now, priority)
        self._refill_at = until
        raise await self._budget_error(until, 0.0, priority)

    def _grant_ended(self, grant: Grant) -> None:
        """After a grant ended: stop holding for the first answer if due, serve the queue."""
        if self._learning and (grant.answered or grant.sent or grant.failed or grant.probe):
            if grant.answered or grant.sent or grant.failed:
                # Answered: the budget now knows the window. An attempt that ended
                # without an answer: it is not worth holding anyone for any longer.
                # The held callers join the queue together, in order.
                self._learning = False
                for held in sorted(self._holding, key=lambda waiter: waiter.seq):
                    if not held.closed:
                        self._enqueue(held)
                    if not held.wake.done():
                        held.wake.set_result(None)
                self._holding.clear()
            else:
                self._release_probe()  # never sent: the next caller learns the window
        if self._queued:
            self._wake_head()

    async def _end(self, grant: Grant) -> None:
        if grant.end_nowait():
            return
        grant._ended = True
        if grant._slots is not None:
            grant._slots.free += 1
        if not grant.sent:
            self._stats["requests_sent"] -= 1
        report = (grant.id, grant.granted_at, grant.budget, grant.sent)
        try:
            await self._report(report, self.clock.time())
        except Exception:
            # The answer is the caller's all the same. The store goes on counting the
            # request as in flight (the safe side) until it answers again; then the
            # report is delivered before the next grant.
            self._unreported.append(report)
            logger.warning(
                "the budget store failed while ending a request; its answer is returned, "
                "and the store counts it as in flight until it answers again",
                exc_info=True,
            )
        self._grant_ended(grant)

    async def _report(
        self, report: tuple[str, float, RateLimitInfo | None, bool], now: float
    ) -> None:
        grant_id, granted_at, info, sent = report
        if sent:
            await self.store.finish(grant_id, granted_at, info, now)
        else:
            await self.store.give_back(grant_id, granted_at, now)

    # -- waiting -------------------------------------------------------------------------

    async def _take(self, priority: Priority, grant_id: str, now: float) -> float | None:
        budget = self._budget
        if budget is not None:
            return budget.try_take(now, priority)
        try:
            while self._unreported:
                report = self._unreported.pop(0)
                try:
                    await self._report(report, now)
                except BaseException:
                    self._unreported.insert(0, report)
                    raise
            return await self.store.take(priority, grant_id, now)
        except Exception as exc:
            raise BudgetStoreError(
                f"the budget store failed before the request was sent ({type(exc).__name__}: "
                f"{exc}); nothing was sent: send it again once the store answers"
            ) from exc

    def _state(self, waiter: _Waiter) -> Literal["go", "slot", "behind"]:
        """Why ``waiter`` waits: it may go, its client has no free slot, or it queues
        behind a caller that goes first."""
        if waiter.slots.free <= 0 and not waiter.reserved:
            return "slot"
        return "go" if self._next() is waiter else "behind"

    def _next(self) -> _Waiter | None:
        """The caller to serve next: the earliest, interactive first, among the first
        callers of each client that has a free slot (or one reserved for it)."""
        best: _Waiter | None = None
        for slots, queues in self._queues.items():
            for queue in queues.values():  # interactive, then bulk
                if not queue:
                    continue
                first = queue[0]
                if first.reserved or slots.free > 0:
                    if best is None or (_RANK[first.priority], first.seq) < (
                        _RANK[best.priority],
                        best.seq,
                    ):
                        best = first
                break  # this client's bulk callers come after its interactive ones
        return best

    def _enqueue(self, waiter: _Waiter) -> None:
        slots = waiter.slots
        queues = self._queues.get(slots)
        if queues is None:
            queues = self._queues[slots] = {"interactive": deque(), "bulk": deque()}
        queues[waiter.priority].append(waiter)
        waiter.queued = True
        self._queued += 1
        slots.waiting += 1

    def _dequeue(self, waiter: _Waiter) -> None:
        if not waiter.queued:
            return
        waiter.queued = False
        self._queued -= 1
        slots = waiter.slots
        slots.waiting -= 1
        if not slots.waiting:
            del self._queues[slots]
            return
        queue = self._queues[slots][waiter.priority]
        if queue[0] is waiter:
            queue.popleft()
        else:
            queue.remove(waiter)

    def _waiters(self) -> list[_Waiter]:
        return [w for queues in self._queues.values() for q in queues.values() for w in q]

    async def _hold(self, waiter: _Waiter, until: float) -> None:
        """Hold back while the first request is on its way (its answer names the
        window), until ``until`` at most; closing the client ends the hold."""
        self._holding.add(waiter)
        try:
            while waiter in self._holding and self._probe_out and not waiter.closed:
                now = self.clock.time()
                if now >= until:
                    return  # the first answer is late: go without it
                await self._sleep(waiter, None if until == math.inf else until - now)
        finally:
            self._holding.discard(waiter)

    def _release_probe(self) -> None:
        """The first request will not be sent: wake the held callers; the first of them
        to run takes its place, and the others hold back again."""
        self._probe_out = False
        for held in self._holding:
            if not held.wake.done():
                held.wake.set_result(None)

    def _note_wait(self, on_wait: OnWait | None) -> None:
        self._stats["waits"] += 1
        if on_wait is not None:
            try:
                on_wait("started", 0.0)
            except Exception:
                logger.warning("on_wait failed", exc_info=True)

    def _refill_after(self, now: float) -> float:
        """When the budget last said it returns, if that is still ahead, else ``now``."""
        return self._refill_at if self._refill_at > now else now

    def _wake_head(self) -> None:
        """Hand grants to queued callers, in order, while the budget allows; wake the next.

        Callers whose client has no free slot are passed over. With the budget in this
        process, grants go straight to the callers that can go, as many as the budget
        allows: waking them one by one, one per turn of the event loop, would keep the
        queue (and every newcomer behind it) waiting under steady load. The first that
        cannot be served is woken to look for itself (it waits for the budget to return,
        or asks a store that answers asynchronously).
        """
        budget = self._budget
        now: float | None = None
        while (waiter := self._next()) is not None:
            if waiter.closed:  # it raises when it runs: nothing to hand it
                self._dequeue(waiter)
                if not waiter.wake.done():
                    waiter.wake.set_result(None)
                continue
            if budget is not None and not waiter.reserved:
                if now is None:
                    now = self.clock.time()
                if budget.try_take(now, waiter.priority) is None:
                    waiter.grant = self._new_grant(waiter.slots, "", now, waiter.priority)
                    self._dequeue(waiter)
                    if not waiter.wake.done():
                        waiter.wake.set_result(None)
                    continue
            if not waiter.wake.done():
                waiter.wake.set_result(None)
            return

    def _wake_doomed(self, until: float) -> None:
        """Wake the queued callers whose max_wait ends before ``until``: they raise now."""
        for waiter in self._waiters():
            if waiter.deadline < until and not waiter.wake.done():
                waiter.wake.set_result(None)

    async def _sleep(self, waiter: _Waiter, delay: float | None) -> None:
        if waiter.wake.done():
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
            waiter.wake = asyncio.get_running_loop().create_future()

    async def _budget_error(
        self, until: float, max_wait: float, priority: Priority
    ) -> RateLimitError:
        now = self.clock.time()
        try:
            snapshot = await self.store.snapshot(now)
        except Exception:
            snapshot = self.store.last_snapshot()
        if until <= now and snapshot.window_end is not None and snapshot.remaining <= 0:
            until = snapshot.window_end + self.reset_margin
        wait = max(0.0, until - now)
        reset_at = datetime.fromtimestamp(max(until, now), timezone.utc)
        if snapshot.remaining <= 0:
            why = f"the budget of {snapshot.limit} requests per window is spent"
        elif priority == "bulk" and snapshot.remaining <= snapshot.reserve:
            why = (
                f"the {snapshot.remaining} requests left in this window are kept for "
                "interactive calls (bulk_reserve)"
            )
        elif until > now:
            why = (
                f"{snapshot.remaining} of {snapshot.limit} requests are left, but requests "
                "are paused after a 429, or paced (pacing='smooth')"
            )
        else:
            why = "the calls queued ahead of this one took the budget and slots first"
        return RateLimitError(
            f"no request may be sent for {wait:.1f} s (until {reset_at:%Y-%m-%d %H:%M:%S} "
            f"UTC), longer than max_wait={max_wait:g} s allows: {why}; send it again after "
            "retry_after seconds, or raise max_wait",
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
            window_confirmed=snapshot.window_confirmed,
            reserve=snapshot.reserve,
            time_waited=self._time_waited,
            **self._stats,
        )


def _slots_error(slots: Slots, max_wait: float) -> PoolTimeoutError:
    reason = (
        f"all {slots.size} of the client's concurrency slots stayed busy for "
        f"max_wait={max_wait:g} s"
    )
    return PoolTimeoutError(
        f"{reason}; nothing was sent: send it again later, or raise max_concurrency or max_wait",
        request_sent=False,
        reason=reason,
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
