"""The limiter on a fake clock, and the budget against the sandbox.

The window rules themselves are tested store by store in ``test_budget_stores.py``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter

import pytest

from cloudonex_async import (
    Client,
    ConfigurationError,
    Event,
    Grant,
    LocalLimiter,
    OutcomeUnknownError,
    RateLimitError,
    RetryPolicy,
)
from cloudonex_async._budget import Budget, BudgetSnapshot, Priority
from cloudonex_async._clock import SYSTEM_CLOCK
from cloudonex_async._protocol import RateLimitInfo
from cloudonex_async._ratelimit import BaseLimiter, MemoryStore, Slots
from cloudonex_async.testing import FakeClock, Faults, SandboxServer

from .conftest import ClientFactory, SandboxFactory, wait_until

T0 = 1_700_000_000.0


async def take(limiter: BaseLimiter, **kwargs: object) -> Grant:
    """A grant whose request is marked sent and then ended (spending the budget)."""
    grant = await limiter.grant(**kwargs)  # type: ignore[arg-type]
    async with grant:
        grant.sent = True
    return grant


# -- the limiter on a fake clock -------------------------------------------------------


async def test_a_simulated_hour_passes_1000_then_the_1001st_waits_until_reset() -> None:
    clock = FakeClock(T0)
    limiter = LocalLimiter(clock=clock)
    for _ in range(1000):
        await take(limiter, max_wait=0)
    assert clock.time() == T0
    with pytest.raises(RateLimitError) as error:
        await take(limiter, max_wait=0)
    assert error.value.reset_at is not None
    assert error.value.reset_at.timestamp() == pytest.approx(T0 + 3600)
    await take(limiter)  # no bound: waits the hour out
    assert clock.time() >= T0 + 3600
    stats = await limiter.statistics()
    assert stats.requests_sent == 1001
    assert stats.waits == 1  # the refused call did not wait
    assert stats.time_waited >= 3600


async def test_interactive_waiters_go_first_and_bulk_keeps_the_reserve() -> None:
    clock = FakeClock(T0)
    limiter = LocalLimiter(rate_limit=10, rate_period=60, bulk_reserve=0.2, clock=clock)
    for _ in range(8):
        await take(limiter, priority="bulk", max_wait=0)
    with pytest.raises(RateLimitError):
        await take(limiter, priority="bulk", max_wait=0)
    await take(limiter, priority="interactive", max_wait=0)
    await take(limiter, priority="interactive", max_wait=0)
    order: list[str] = []

    async def wait(name: str, priority: str) -> None:
        await take(limiter, priority=priority)
        order.append(name)

    bulk = asyncio.ensure_future(wait("bulk", "bulk"))
    await asyncio.sleep(0)
    interactive = asyncio.ensure_future(wait("interactive", "interactive"))
    await asyncio.gather(bulk, interactive)
    assert order == ["interactive", "bulk"]


async def test_smooth_pacing_serves_an_interactive_call_before_queued_bulk_calls() -> None:
    clock = FakeClock(T0, auto_advance=False)  # time moves only when the test says so
    limiter = LocalLimiter(
        rate_limit=100, rate_period=100, pacing="smooth", bulk_reserve=0.0, clock=clock
    )
    order: list[str] = []

    async def call(name: str, priority: str) -> None:
        await take(limiter, priority=priority)
        order.append(name)

    bulk = [asyncio.ensure_future(call(f"bulk{n}", "bulk")) for n in range(6)]
    await wait_until(lambda: order == ["bulk0"] and clock.sleeping == 1)  # five queued
    interactive = asyncio.ensure_future(call("interactive", "interactive"))
    await asyncio.sleep(0)
    while len(order) < 7:
        clock.advance(1.0)  # the pace: 100 s over 100 requests
        await wait_until(lambda: clock.sleeping == 1 or len(order) == 7)
    await asyncio.gather(*bulk, interactive)
    assert order == ["bulk0", "interactive", *(f"bulk{n}" for n in range(1, 6))]
    assert clock.time() == pytest.approx(T0 + 6)


async def test_cancelling_a_waiter_frees_its_place_and_spends_nothing() -> None:
    clock = FakeClock(T0, auto_advance=False)
    limiter = LocalLimiter(rate_limit=1, rate_period=60, clock=clock)
    await take(limiter)
    waiter = asyncio.ensure_future(take(limiter))
    await wait_until(lambda: clock.sleeping == 1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert clock.sleeping == 0
    stats = limiter.statistics_nowait()
    assert stats.requests_sent == 1  # the cancelled waiter took nothing
    assert limiter.grant_nowait() is None  # the budget is still spent...
    clock.advance(60.05)
    await take(limiter, max_wait=0)  # ...and nobody is queued ahead of the next caller


async def test_a_grant_that_never_left_gives_the_budget_back() -> None:
    limiter = LocalLimiter(rate_limit=1, rate_period=60, clock=FakeClock(T0))
    async with await limiter.grant():
        pass  # never marked sent: the request did not leave
    assert limiter.statistics_nowait().requests_sent == 0
    await take(limiter, max_wait=0)
    with pytest.raises(RateLimitError):
        await take(limiter, max_wait=0)


async def test_a_caller_waiting_for_a_slot_holds_no_budget_token() -> None:
    limiter = LocalLimiter(rate_limit=5, rate_period=60, clock=FakeClock(T0))
    first = await limiter.grant()
    first.sent = first.answered = True  # the first answer: the window is known
    await first.end()
    slots = Slots(1)
    held = await limiter.grant(slots=slots)
    waiter = asyncio.ensure_future(limiter.grant(slots=slots))
    await wait_until(lambda: slots.waiting == 1)
    assert limiter.statistics_nowait().requests_sent == 2  # no token taken while waiting
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert slots.waiting == 0
    assert limiter.statistics_nowait().requests_sent == 2
    async with held:
        held.sent = True
    assert slots.free == 1
    assert limiter.statistics_nowait().remaining == 3


async def test_a_freed_slot_goes_to_its_clients_interactive_waiter_first() -> None:
    limiter = LocalLimiter(rate_limit=50, rate_period=60, clock=FakeClock(T0))
    await take(limiter)  # the first request has ended: nobody holds back for it
    slots = Slots(1)
    held = await limiter.grant(slots=slots)
    order: list[str] = []

    async def wait(name: str, priority: Priority) -> None:
        grant = await limiter.grant(slots=slots, priority=priority)
        order.append(name)
        await grant.end()

    waiters = [asyncio.ensure_future(wait("bulk", "bulk"))]
    await asyncio.sleep(0)
    waiters.append(asyncio.ensure_future(wait("interactive", "interactive")))
    await wait_until(lambda: slots.waiting == 2)
    await held.end()
    await asyncio.gather(*waiters)
    assert order == ["interactive", "bulk"]
    assert slots.free == 1
    assert slots.waiting == 0


async def test_until_the_first_answer_one_request_goes_at_a_time() -> None:
    limiter = LocalLimiter(rate_limit=1000, clock=FakeClock(T0))
    probe = await limiter.grant()
    assert limiter.grant_nowait() is None  # the first answer will name the window
    waiter = asyncio.ensure_future(limiter.grant())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    probe.sent = probe.answered = True
    await probe.end()
    second = await waiter
    third = limiter.grant_nowait()  # from here on, the budget alone decides
    assert third is not None
    for grant in (second, third):
        await grant.end()


async def test_a_freed_budget_goes_to_every_queued_caller_it_covers_at_once() -> None:
    # Woken one per turn of the loop, a queue under steady load never empties, and
    # every newcomer queues behind it: the grants are handed over instead.
    clock = FakeClock(T0, auto_advance=False)
    limiter = LocalLimiter(rate_limit=5, rate_period=60, clock=clock)
    probe = await limiter.grant()
    waiters = [asyncio.ensure_future(limiter.grant()) for _ in range(8)]
    await asyncio.sleep(0)
    probe.sent = probe.answered = True
    await probe.end()  # the first answer: the queue may go
    # All the budget covers was handed over in that one step, before any waiter ran:
    assert limiter.statistics_nowait().requests_sent == 5
    assert not any(w.done() for w in waiters)
    await wait_until(lambda: sum(1 for w in waiters if w.done()) == 4)
    assert limiter.grant_nowait() is None  # nobody jumps the queue
    clock.advance(60.05)
    await asyncio.gather(*waiters)
    for waiter in waiters:
        await waiter.result().end()


async def test_bad_limiter_settings_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="rate_limit"):
        LocalLimiter(rate_limit=0)
    with pytest.raises(ConfigurationError, match="bulk_reserve"):
        LocalLimiter(bulk_reserve=1.0)
    with pytest.raises(ConfigurationError, match="rate_period"):
        LocalLimiter(rate_period=math.inf)


# -- against the sandbox -------------------------------------------------------------


def windows_used(sandbox: SandboxServer) -> Counter[int]:
    return Counter(
        math.floor(r.at / sandbox.rate_period) for r in sandbox.requests if r.status == 200
    )


async def test_200_concurrent_gets_fit_a_small_window_with_no_429(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await make_sandbox(rate_limit=20, rate_period=1)
    client = make_client(sandbox, limiter=LocalLimiter(rate_limit=20, rate_period=1))
    await asyncio.gather(*(client.request("GET", "customers") for _ in range(200)))
    assert [r.status for r in sandbox.requests] == [200] * 200
    per_window = windows_used(sandbox)
    assert len(per_window) <= 11  # 200 / 20 = 10, plus one if the run began mid-window
    assert sum(1 for n in per_window.values() if n == 20) >= 9
    assert client.rate_limit.rate_limited == 0


async def test_a_default_client_follows_the_servers_short_windows(
    make_sandbox: SandboxFactory,
) -> None:
    # The client is told nothing (1000 per hour by default); the server announces
    # 20 requests per 2 s windows, and the budget must follow them from the first answer.
    sandbox = await make_sandbox(rate_limit=20, rate_period=1)
    events: list[tuple[float, Event]] = []
    async with Client(
        base_url=sandbox.base_url,
        api_key=sandbox.api_key,
        event_hooks=[lambda event: events.append((time.time(), event))],
    ) as client:
        await asyncio.gather(*(client.request("GET", "customers") for _ in range(100)))
        status = client.rate_limit
    statuses = [r.status for r in sandbox.requests]
    assert statuses.count(200) == 100
    # One request went alone, before any answer; it named the window, and nothing
    # sent after it met a 429 (nor did anything before it: none went blind).
    first_answer = min(t for t, e in events if e.kind == "response_received")
    blind = sum(1 for t, e in events if e.kind == "request_sent" and t < first_answer)
    assert blind == 1
    assert 429 not in statuses
    per_window = windows_used(sandbox)
    assert len(per_window) <= 6, per_window  # 100 / 20 = 5, plus one if begun mid-window
    assert status.window_seconds == pytest.approx(1)
    assert status.limit == 20


async def test_max_wait_zero_raises_with_the_reset_time_over_http(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    clock = FakeClock(T0)
    sandbox = await make_sandbox(rate_limit=5, rate_period=3600, clock=clock)
    client = make_client(sandbox, limiter=LocalLimiter(clock=clock))
    for _ in range(5):
        await client.request("GET", "customers", max_wait=0)
    with pytest.raises(RateLimitError) as error:
        await client.request("GET", "customers", max_wait=0)
    reset = math.ceil(T0 / 3600 + 1e-9) * 3600
    assert error.value.reset_at is not None
    assert error.value.reset_at.timestamp() == pytest.approx(reset + 0.05)
    assert "max_wait" in str(error.value)
    assert sandbox.count() == 5  # refused locally, not by a 429
    await client.request("GET", "customers")  # waits for Reset, then goes through
    assert clock.time() >= reset


async def test_interactive_calls_are_served_from_the_reserve_during_a_bulk_job(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await make_sandbox(rate_limit=50, rate_period=3600)
    limiter = LocalLimiter(rate_limit=50, rate_period=3600, bulk_reserve=0.1)
    client = make_client(sandbox, limiter=limiter)
    bulk = [
        asyncio.ensure_future(client.request("GET", "customers", priority="bulk"))
        for _ in range(100)
    ]
    try:
        # Until the job has spent all it may (90%) and waits for Reset:
        await wait_until(lambda: sum(t.done() for t in bulk) == 45 and client.rate_limit.waits > 0)
        for _ in range(5):  # the reserve: 10% of 50
            assert await client.request("GET", "customers", max_wait=0) == []
        with pytest.raises(RateLimitError):  # the reserve is not bottomless
            await client.request("GET", "customers", max_wait=0)
    finally:
        for task in bulk:
            task.cancel()
        await asyncio.gather(*bulk, return_exceptions=True)
    assert sandbox.count() == 50
    assert client.rate_limit.rate_limited == 0
    assert client.rate_limit.requests_sent == 50  # the cancelled waiters spent nothing


async def test_two_clients_in_one_process_share_the_budget(make_sandbox: SandboxFactory) -> None:
    sandbox = await make_sandbox(rate_limit=20, rate_period=1)
    settings = {
        "base_url": sandbox.base_url,
        "api_key": sandbox.api_key,
        "rate_limit": 20,
        "rate_period": 1,
    }
    async with Client(**settings) as a, Client(**settings) as b:  # type: ignore[arg-type]
        assert a.limiter is b.limiter
        await asyncio.gather(*(c.request("GET", "customers") for c in (a, b) for _ in range(50)))
    assert [r.status for r in sandbox.requests] == [200] * 100
    per_window = windows_used(sandbox)
    full = [n for n in per_window.values() if n == 20]
    assert len(per_window) <= 6  # 100 / 20 = 5, plus one if the run began mid-window
    assert len(full) >= 4


async def test_a_429_pauses_and_is_retried(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    clock = FakeClock(T0)
    sandbox = await make_sandbox(rate_limit=3, rate_period=60, clock=clock)
    other = make_client(sandbox, limiter=LocalLimiter(clock=clock))
    for _ in range(3):  # another program spends the key behind our limiter's back
        await other.request("GET", "customers")
    client = make_client(sandbox, limiter=LocalLimiter(clock=clock))
    assert await client.request("GET", "customers") == []
    statuses = [r.status for r in sandbox.requests]
    assert statuses == [200, 200, 200, 429, 200]
    assert client.rate_limit.rate_limited == 1
    assert client.rate_limit.retries == 1
    assert clock.time() >= T0 + 1


async def test_faults_get_retried_and_posts_never_duplicate(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    faults = Faults(error_rate=0.1, drop_rate=0.05, stall_rate=0.03, stall_seconds=1.0, seed=7)
    sandbox = await make_sandbox(faults=faults)
    client = make_client(
        sandbox,
        timeout=0.25,
        retry=RetryPolicy(attempts=8, backoff_base=0.001, backoff_max=0.01),
    )
    got = await asyncio.gather(*(client.request("GET", "customers") for _ in range(60)))
    assert got == [[]] * 60

    async def create(n: int) -> str:
        try:
            await client.customers.create({"account": f"C{n}", "email": f"c{n}@example.com"})
        except OutcomeUnknownError:
            return "unknown"
        return "created"

    outcomes = Counter(await asyncio.gather(*(create(n) for n in range(80))))
    creates = [r for r in sandbox.requests if r.action == "create"]
    assert len(creates) == 80  # each POST was sent exactly once
    assert outcomes["unknown"] == sum(1 for r in creates if r.fault is not None)
    emails = [r["email"] for r in sandbox.records("customers")]
    assert len(emails) == len(set(emails))
    assert outcomes["created"] <= len(emails) <= 80


async def test_closing_the_client_wakes_its_waiters(make_sandbox: SandboxFactory) -> None:
    sandbox = await make_sandbox(rate_limit=1, rate_period=3600)
    limiter = LocalLimiter(rate_limit=1)
    client = Client(base_url=sandbox.base_url, api_key=sandbox.api_key, limiter=limiter)
    await client.request("GET", "customers")
    waiter = asyncio.ensure_future(client.request("GET", "customers"))  # waits for Reset
    await wait_until(lambda: client.rate_limit.waits == 1)
    await client.close()
    with pytest.raises(ConfigurationError, match="closed"):
        await waiter
    assert sandbox.count() == 1


async def test_cancelling_an_in_flight_call_leaves_nothing_behind(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await make_sandbox(latency=0.5)
    client = make_client(sandbox)
    call = asyncio.ensure_future(client.request("GET", "customers"))
    await wait_until(lambda: sandbox.count() == 1)  # it reached the server
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert client.rate_limit.requests_sent == 1  # it left: its budget is spent
    sandbox.latency = 0
    assert await client.request("GET", "customers") == []


# -- the window's length shown: an estimate after one Reset, the server's after two -----


@pytest.mark.parametrize(
    ("configured", "period", "estimate"),
    [
        # Set up for the server's plan: the one Reset seen does not contradict it.
        ({"rate_limit": 30, "rate_period": 120}, 120.0, 120.0),
        # The defaults (1000 per hour): the server's limit differs, so the configured
        # period says nothing of its window. Twice the 6.14 s left: about 12 s.
        ({}, 3600.0, 12.28),
    ],
    ids=["configured-like-the-server", "configured-otherwise"],
)
async def test_the_window_is_estimated_after_one_reset_and_confirmed_after_two(
    make_sandbox: SandboxFactory,
    make_client: ClientFactory,
    configured: dict[str, float],
    period: float,
    estimate: float,
) -> None:
    end = math.ceil(T0 / 120) * 120  # one of the server's 120 s windows ends here
    clock = FakeClock(end - 6.14)
    sandbox = await make_sandbox(rate_limit=30, rate_period=120, clock=clock)
    client = make_client(sandbox, limiter=LocalLimiter(clock=clock, **configured))  # type: ignore[arg-type]
    before = client.rate_limit
    assert (before.window_seconds, before.window_confirmed) == (period, False)
    await client.request("GET", "customers")
    one = client.rate_limit
    assert (one.limit, one.window_confirmed) == (30, False)
    assert one.window_seconds == pytest.approx(estimate)
    clock.advance(7)  # into the server's next window
    await client.request("GET", "customers")
    two = client.rate_limit
    assert (two.window_seconds, two.window_confirmed) == (120, True)
    assert two.reset_at is not None
    assert two.reset_at.timestamp() == end + 120


# -- the first-answer hold where a cancel, a close and an asynchronous store meet ---------


async def test_a_held_caller_goes_when_the_one_handed_the_hold_is_cancelled() -> None:
    limiter = LocalLimiter(rate_limit=100, rate_period=60, clock=FakeClock(T0, auto_advance=False))
    probe = await limiter.grant()  # the first request; it will never be sent
    first = asyncio.ensure_future(limiter.grant())
    second = asyncio.ensure_future(limiter.grant())
    await asyncio.sleep(0)  # both hold back for its answer
    await probe.end()
    first.cancel()  # the caller the hold passes to leaves before it runs
    grant = await asyncio.wait_for(second, 5)
    assert grant.probe  # it took the first request's place
    await grant.end()


async def test_a_caller_closed_as_the_hold_ends_takes_nothing_with_it() -> None:
    limiter = LocalLimiter(rate_limit=100, rate_period=60, clock=FakeClock(T0, auto_advance=False))
    mine, theirs = Slots(2), Slots(2)
    owner = object()
    probe = await limiter.grant(slots=theirs)
    held = asyncio.ensure_future(limiter.grant(owner=owner, slots=mine, max_wait=30))
    await asyncio.sleep(0)
    limiter.cancel_waiters(owner)  # its client closes while it holds back...
    probe.sent = probe.answered = True
    await probe.end()  # ...and the first answer arrives in the same turn
    with pytest.raises(ConfigurationError, match="closed"):
        await held
    assert mine.free == 2
    assert limiter.statistics_nowait().requests_sent == 1
    assert limiter.statistics_nowait().remaining == 99


class AwaitedStore:
    """A budget in memory behind a round trip, as Redis is (no grant without waiting)."""

    def __init__(self, budget: Budget) -> None:
        self.inner = MemoryStore(budget, SYSTEM_CLOCK)

    async def take(self, priority: Priority, grant_id: str, now: float) -> float | None:
        await asyncio.sleep(0.001)
        return await self.inner.take(priority, grant_id, now)

    async def give_back(self, grant_id: str, granted_at: float, now: float) -> None:
        await self.inner.give_back(grant_id, granted_at, now)

    async def finish(
        self, grant_id: str, granted_at: float, info: RateLimitInfo | None, now: float
    ) -> None:
        await self.inner.finish(grant_id, granted_at, info, now)

    async def pause(self, until: float, now: float) -> None:
        await self.inner.pause(until, now)

    async def snapshot(self, now: float) -> BudgetSnapshot:
        return await self.inner.snapshot(now)

    def last_snapshot(self) -> BudgetSnapshot:
        return self.inner.last_snapshot()


async def test_callers_arriving_while_an_async_store_grants_the_first_request_hold_back() -> None:
    store = AwaitedStore(Budget(limit=100, period=60))
    limiter = BaseLimiter(store, rate_limit=100, rate_period=60)
    calls = [asyncio.ensure_future(limiter.grant()) for _ in range(10)]
    await wait_until(lambda: any(c.done() for c in calls))
    for _ in range(20):
        await asyncio.sleep(0.001)  # round trips in which others could have been granted
    assert sum(1 for c in calls if c.done()) == 1  # one request goes blind, not ten
    [probe] = [c.result() for c in calls if c.done()]
    probe.sent = probe.answered = True
    await probe.end()
    granted = await asyncio.gather(*calls)
    for grant in granted:
        if grant is not probe:
            await grant.end()
