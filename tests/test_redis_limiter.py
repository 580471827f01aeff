"""RedisLimiter: one budget across processes, against a real redis-server.

The tests use the session's ``redis-server`` (see ``conftest.redis_url``).
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from cloudonex_async import Client, Grant, RateLimitError, RateLimitInfo, RedisLimiter
from cloudonex_async.testing import FakeClock

from .conftest import SandboxFactory

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_700_000_000.0


@pytest_asyncio.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    await client.flushdb()
    yield client
    await client.aclose()


def make_limiter(redis: Redis, clock: FakeClock | None = None, **kwargs: object) -> RedisLimiter:
    return RedisLimiter(
        redis,
        base_url="https://x.test",
        api_key="k",
        clock=clock,
        **kwargs,  # type: ignore[arg-type]
    )


async def spend(
    limiter: RedisLimiter, info: RateLimitInfo | None = None, **kwargs: object
) -> Grant:
    """Take a grant, mark its request sent, and end it with what the answer announced."""
    grant = await limiter.grant(**kwargs)  # type: ignore[arg-type]
    async with grant:
        grant.sent = True
        grant.budget = info
    return grant


async def test_a_simulated_hour_through_redis(redis: Redis) -> None:
    clock = FakeClock(T0)
    limiter = make_limiter(redis, clock, rate_limit=100, rate_period=3600)
    limiter.poll_seconds = 600  # fake time: nobody else changes the budget meanwhile
    for _ in range(100):
        await spend(limiter, max_wait=0)
    with pytest.raises(RateLimitError) as error:
        await spend(limiter, max_wait=0)
    assert error.value.reset_at is not None
    assert error.value.reset_at.timestamp() == pytest.approx(T0 + 3600)
    await spend(limiter)
    assert clock.time() >= T0 + 3600


async def test_the_server_window_and_reserve_are_shared(redis: Redis) -> None:
    clock = FakeClock(T0)
    a = make_limiter(redis, clock, rate_limit=1000, bulk_reserve=0.2)
    b = make_limiter(redis, clock, rate_limit=1000, bulk_reserve=0.2)
    await spend(a, RateLimitInfo(remaining=9, limit=10, reset_epoch=T0 + 60, reset_at=T0 + 60))
    stats = await b.statistics()
    assert (stats.limit, stats.remaining) == (10, 9)
    for _ in range(7):
        await spend(b, priority="bulk", max_wait=0)
    with pytest.raises(RateLimitError):
        await spend(a, priority="bulk", max_wait=0)
    await spend(a, priority="interactive", max_wait=0)
    unsent = await b.grant(priority="interactive", max_wait=0)
    with pytest.raises(RateLimitError):
        await spend(a, max_wait=0)
    await unsent.end()  # never sent: its token goes back, for every process
    await spend(a, max_wait=0)


async def test_a_429_pause_is_shared(redis: Redis) -> None:
    clock = FakeClock(T0)
    a = make_limiter(redis, clock)
    b = make_limiter(redis, clock)
    await a.rate_limited(30.0, None)
    with pytest.raises(RateLimitError) as error:
        await spend(b, max_wait=0)
    assert error.value.retry_after == pytest.approx(30)
    await spend(b)
    assert clock.time() >= T0 + 30


async def test_a_take_cancelled_while_redis_grants_it_is_given_back(redis: Redis) -> None:
    limiter = make_limiter(redis, FakeClock(T0), rate_limit=5, rate_period=3600)
    store = limiter.store
    take = asyncio.ensure_future(store.take("interactive", "g1", T0))
    await asyncio.sleep(0)  # the script is on its way to Redis: it will grant
    take.cancel()
    with pytest.raises(asyncio.CancelledError):
        await take
    # The grant was made, then undone: nothing is left in the log or in flight.
    assert (await store.snapshot(T0)).remaining == 5
    log, flight = limiter.store.keys[1:]  # type: ignore[attr-defined]
    assert await redis.zcard(log) == 0
    assert await redis.zcard(flight) == 0


async def test_client_rate_limit_follows_answers_through_redis(
    redis: Redis, make_sandbox: SandboxFactory
) -> None:
    sandbox = await make_sandbox(rate_limit=50, rate_period=3600)
    limiter = RedisLimiter(redis, base_url=sandbox.base_url, api_key=sandbox.api_key)
    async with Client(base_url=sandbox.base_url, api_key=sandbox.api_key, limiter=limiter) as c:
        for _ in range(3):
            await c.request("GET", "customers")
        status = c.rate_limit  # no await: the view as of this process's last answer
    assert (status.limit, status.remaining) == (50, 47)
    assert status.reset_at is not None


@pytest.mark.slow
async def test_four_processes_share_one_budget_with_no_429(
    redis: Redis, redis_url: str, make_sandbox: SandboxFactory
) -> None:
    limit, period, workers, each = 25, 1.0, 4, 25
    sandbox = await make_sandbox(rate_limit=limit, rate_period=period)
    start_at = (math.floor(time.time() / period) + 3) * period  # a window boundary, after start-up
    args = [
        sandbox.base_url,
        sandbox.api_key,
        redis_url,
        str(each),
        repr(start_at),
        str(limit),
        repr(period),
    ]
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.redis_worker",
            *args,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(workers)
    ]
    outputs = [await p.communicate() for p in procs]
    for (_, err), proc in zip(outputs, procs, strict=True):
        assert proc.returncode == 0, err.decode()
    reports = [json.loads(out) for out, _ in outputs]
    assert sum(r["rate_limited"] for r in reports) == 0
    assert [r.status for r in sandbox.requests] == [200] * (workers * each)
    per_window = Counter(math.floor(r.at / period) for r in sandbox.requests)
    used = workers * each / (limit * len(per_window))
    assert used >= 0.95, per_window
