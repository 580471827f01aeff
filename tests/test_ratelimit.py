"""The budget: the pure window model, the limiter on a fake clock, and the sandbox."""

from __future__ import annotations

import asyncio
import math
from collections import Counter

import pytest

from cloudonex_async import (
    Client,
    ConfigurationError,
    LocalLimiter,
    OutcomeUnknownError,
    RateLimitError,
    RateLimitInfo,
    RetryPolicy,
)
from cloudonex_async._ratelimit import Budget
from cloudonex_async.testing import FakeClock, Faults, SandboxServer

from .conftest import ClientFactory, SandboxFactory, wait_until

T0 = 1_700_000_000.0


def info(remaining: int, reset: float, limit: int = 10) -> RateLimitInfo:
    return RateLimitInfo(remaining=remaining, limit=limit, reset_epoch=reset, reset_at=reset)


# -- Budget: pure ----------------------------------------------------------------------


def test_before_any_response_no_window_of_rate_period_holds_more_than_rate_limit() -> None:
    budget = Budget(limit=5, period=10.0, bulk_reserve=0.0)
    times: list[float] = []
    now = T0
    while len(times) < 30:
        if budget.try_take(now):
            times.append(now)
        else:
            now = budget.next_refill(now)
    for start in times:
        assert sum(1 for t in times if start <= t < start + 10.0) <= 5


def test_server_reports_only_lower_the_estimate_within_a_window() -> None:
    budget = Budget(limit=10, period=60.0, bulk_reserve=0.0)
    for _ in range(3):
        assert budget.try_take(T0)
    budget.observe(info(8, T0 + 30), T0)  # answered second: the server counted two
    assert budget.available(T0) == 7  # our three grants win over its two
    budget.observe(info(9, T0 + 30), T0)  # a late answer from before: ignored
    assert budget.available(T0) == 7
    budget.observe(info(2, T0 + 30), T0)  # someone else used the key too
    assert budget.available(T0) == 2


def test_the_window_rolls_over_at_reset_plus_margin() -> None:
    budget = Budget(limit=10, period=60.0, bulk_reserve=0.0, margin=0.05)
    assert budget.try_take(T0)
    budget.observe(info(0, T0 + 30), T0)
    assert budget.available(T0 + 29) == 0
    assert budget.next_refill(T0 + 29) == T0 + 30.05
    assert budget.available(T0 + 30.05) == 9  # still in flight: it may land in the new window
    budget.finish(T0)
    assert budget.available(T0 + 30.05) == 9  # ... and it may have: only a report tells
    assert budget.available(T0 + 90.05) == 10
    budget.observe(info(5, T0 + 30), T0 + 91)  # a straggler from an old window
    assert budget.available(T0 + 91) == 10


def test_a_report_read_after_its_window_ended_goes_with_the_window() -> None:
    budget = Budget(limit=10, period=60.0, bulk_reserve=0.0, margin=0.05)
    assert budget.try_take(T0)
    budget.observe(info(9, T0 + 30), T0)
    budget.finish(T0)
    budget.observe(info(0, T0 + 30), T0 + 31)  # that window, but read after its end
    assert budget.available(T0 + 31) == 10


def test_bulk_leaves_the_reserve() -> None:
    budget = Budget(limit=20, period=60.0, bulk_reserve=0.1)
    for _ in range(18):
        assert budget.try_take(T0, "bulk")
    assert not budget.try_take(T0, "bulk")
    assert budget.available(T0, "bulk") == 0
    assert budget.available(T0, "interactive") == 2
    assert budget.try_take(T0, "interactive")


def test_give_back_returns_an_unsent_grant() -> None:
    budget = Budget(limit=2, period=60.0, bulk_reserve=0.0)
    assert budget.try_take(T0)
    assert budget.try_take(T0 + 1)
    assert not budget.try_take(T0 + 1)
    budget.give_back(T0 + 1)
    assert budget.available(T0 + 1) == 1


def test_pause_stops_everything_until_it_ends() -> None:
    budget = Budget(limit=10, period=60.0)
    budget.pause(T0 + 5)
    assert budget.available(T0) == 0
    assert budget.next_refill(T0) == T0 + 5
    assert budget.available(T0 + 5) == 10


# -- the limiter on a fake clock -------------------------------------------------------


async def test_a_simulated_hour_passes_1000_then_the_1001st_waits_until_reset() -> None:
    clock = FakeClock(T0)
    limiter = LocalLimiter(clock=clock)
    for _ in range(1000):
        await limiter.acquire(max_wait=0)
    assert clock.time() == T0
    with pytest.raises(RateLimitError) as error:
        await limiter.acquire(max_wait=0)
    assert error.value.reset_at is not None
    assert error.value.reset_at.timestamp() == pytest.approx(T0 + 3600)
    await limiter.acquire()  # no bound: waits the hour out
    assert clock.time() >= T0 + 3600
    stats = await limiter.statistics()
    assert stats.requests_sent == 1001
    assert stats.waits == 1  # the refused call did not wait
    assert stats.time_waited >= 3600


async def test_interactive_waiters_go_first_and_bulk_keeps_the_reserve() -> None:
    clock = FakeClock(T0)
    limiter = LocalLimiter(rate_limit=10, rate_period=60, bulk_reserve=0.2, clock=clock)
    for _ in range(8):
        await limiter.acquire(priority="bulk", max_wait=0)
    with pytest.raises(RateLimitError):
        await limiter.acquire(priority="bulk", max_wait=0)
    await limiter.acquire(priority="interactive", max_wait=0)
    await limiter.acquire(priority="interactive", max_wait=0)
    order: list[str] = []

    async def take(name: str, priority: str) -> None:
        await limiter.acquire(priority=priority)  # type: ignore[arg-type]
        order.append(name)

    bulk = asyncio.ensure_future(take("bulk", "bulk"))
    await asyncio.sleep(0)
    interactive = asyncio.ensure_future(take("interactive", "interactive"))
    await asyncio.gather(bulk, interactive)
    assert order == ["interactive", "bulk"]


async def test_cancelling_a_waiter_frees_its_place() -> None:
    clock = FakeClock(T0)
    limiter = LocalLimiter(rate_limit=1, rate_period=60, clock=clock)
    await limiter.acquire()
    waiter = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert clock.time() < T0 + 60 or waiter.cancelled()
    ticket = await limiter.acquire()  # the queue is empty again
    assert ticket.priority == "interactive"


async def test_refund_gives_the_budget_back() -> None:
    limiter = LocalLimiter(rate_limit=1, rate_period=60, clock=FakeClock(T0))
    ticket = await limiter.acquire()
    await limiter.refund(ticket)
    await limiter.acquire(max_wait=0)


async def test_bad_limiter_settings_are_refused() -> None:
    with pytest.raises(ConfigurationError):
        LocalLimiter(rate_limit=0)
    with pytest.raises(ConfigurationError):
        LocalLimiter(bulk_reserve=1.0)


async def test_smooth_pacing_spreads_requests_out() -> None:
    limiter = LocalLimiter(rate_limit=20, rate_period=1.0, pacing="smooth", bulk_reserve=0.0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(4):
        await limiter.acquire()
    # Burst pacing would take ~0 s; smooth spaces them by period / limit = 0.05 s.
    assert loop.time() - start >= 3 * 0.05 * 0.9


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


async def test_max_wait_zero_raises_with_the_reset_time_over_http(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    clock = FakeClock(T0)
    sandbox = await make_sandbox(rate_limit=5, rate_period=3600, clock=clock)
    client = make_client(sandbox, clock=clock, limiter=LocalLimiter(clock=clock))
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
    other = make_client(sandbox, clock=clock, limiter=LocalLimiter(clock=clock))
    for _ in range(3):  # another program spends the key behind our limiter's back
        await other.request("GET", "customers")
    client = make_client(sandbox, clock=clock, limiter=LocalLimiter(clock=clock))
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
    await asyncio.sleep(0.05)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert client.rate_limit.requests_sent == 1
    assert await client.request("GET", "customers") == []
