"""One table of window scenarios, run against both budget stores: memory and Redis.

Each scenario is a list of steps on the store interface at given times (on a fake
timeline, no sleeping): take a grant, finish it with the budget an answer announced,
give it back, pause, and look at the snapshot. Both stores must agree on every step.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from cloudonex_async._budget import Budget
from cloudonex_async._protocol import RateLimitInfo
from cloudonex_async._ratelimit import BudgetStore, MemoryStore
from cloudonex_async.limiters import RedisStore
from cloudonex_async.testing import FakeClock

T0 = 1_700_000_000.0


def answer(
    remaining: int, reset: float | None, limit: int | None = None, relative: bool = False
) -> RateLimitInfo:
    """What an answer announced (``reset`` on the local clock, as the parser makes it)."""
    epoch = float(round(reset)) if relative and reset is not None else reset
    return RateLimitInfo(
        remaining=remaining, limit=limit, reset_epoch=epoch, reset_at=reset, relative=relative
    )


@dataclass
class Take:
    at: float
    name: str
    retry_at: float | None = None  # None: granted; else when to try again
    priority: str = "interactive"


@dataclass
class Finish:
    at: float
    name: str
    info: RateLimitInfo | None = None


@dataclass
class GiveBack:
    at: float
    name: str


@dataclass
class Pause:
    at: float
    until: float


@dataclass
class Look:
    at: float
    remaining: int
    window_end: float | None = None
    window_seconds: float | None = None
    limit: int | None = None
    window_confirmed: bool | None = None


Step = Take | Finish | GiveBack | Pause | Look


@dataclass
class Scenario:
    name: str
    limit: int
    period: float
    steps: list[Step]
    reserve: float = 0.0
    smooth: bool = False
    granted_at: dict[str, float] = field(default_factory=dict)


def many(count: int, at: float, prefix: str) -> list[Step]:
    return [Take(at, f"{prefix}{n}") for n in range(count)]


SCENARIOS = [
    Scenario(
        "before any answer: no window of rate_period holds more than rate_limit",
        limit=3,
        period=10.0,
        steps=[
            Take(T0, "a"),
            Take(T0 + 1, "b"),
            Take(T0 + 2, "c"),
            Take(T0 + 3, "d", retry_at=T0 + 10),
            Take(T0 + 10, "e"),
            Take(T0 + 10.5, "f", retry_at=T0 + 11),
            Look(T0 + 10.5, remaining=0, window_end=None),
        ],
    ),
    Scenario(
        "server reports only lower the estimate within a window",
        limit=10,
        period=60.0,
        steps=[
            *many(3, T0, "g"),
            Finish(T0, "g0", answer(8, T0 + 30)),  # the server counted two: our three win
            Look(T0, remaining=7, window_end=T0 + 30),
            Finish(T0, "g1", answer(9, T0 + 30)),  # a late answer from before: ignored
            Look(T0, remaining=7),
            Finish(T0, "g2", answer(2, T0 + 30)),  # someone else used the key too
            Look(T0, remaining=2),
        ],
    ),
    Scenario(
        "the window rolls over at Reset plus the margin, less what is in flight",
        limit=10,
        period=60.0,
        steps=[
            Take(T0, "a"),
            Take(T0, "b"),
            Finish(T0, "a", answer(0, T0 + 30)),
            Take(T0 + 29, "c", retry_at=T0 + 30.05),
            Look(T0 + 30.05, remaining=9),  # b is still in flight: it may land in the new one
            Finish(T0 + 31, "b"),
            Look(T0 + 31, remaining=9),  # ... and it may have: only a report tells
            Take(T0 + 90.05, "c"),
            Look(T0 + 90.05, remaining=9),
            Finish(T0 + 91, "c", answer(5, T0 + 30)),  # a straggler from an old window
            Look(T0 + 91, remaining=9),  # ignored: c itself still counts in this one
        ],
    ),
    Scenario(
        "the server's 5 s window is followed although rate_period says an hour",
        limit=1000,
        period=3600.0,
        steps=[
            *many(5, T0, "w"),
            *(Finish(T0, f"w{n}", answer(4 - n, T0 + 5, limit=5)) for n in range(5)),
            Look(T0, remaining=0, window_end=T0 + 5, limit=5),
            Take(T0 + 1, "late", retry_at=T0 + 5.05),
            Take(T0 + 5.05, "x0"),
            Finish(T0 + 5.1, "x0", answer(4, T0 + 10, limit=5)),
            Look(
                T0 + 5.1, remaining=4, window_end=T0 + 10, window_seconds=5, window_confirmed=True
            ),
            *many(4, T0 + 5.1, "y"),
            *(Finish(T0 + 5.3, f"y{n}", answer(3 - n, T0 + 10)) for n in range(4)),
            # The next window, not the next hour:
            Take(T0 + 5.2, "z", retry_at=T0 + 10.05),
            Take(T0 + 10.05, "z"),
            Look(T0 + 10.05, remaining=4, window_end=T0 + 15),
        ],
    ),
    Scenario(
        "until a second Reset tells its length, the window is guessed from the first",
        limit=10,
        period=3600.0,
        steps=[
            Take(T0, "a"),
            Finish(T0 + 1, "a", answer(9, T0 + 5)),  # 4 s left: a window of about 8 s
            # (What is shown is the configured hour, which nothing has contradicted.)
            Look(T0 + 1, remaining=9, window_seconds=3600.0, window_confirmed=False),
            Take(T0 + 5.05, "b"),  # rolled over: the next window guessed as long
            Look(T0 + 5.05, remaining=9, window_end=T0 + 13),
        ],
    ),
    Scenario(
        "a Reset given as seconds from now names one window despite its wobble",
        limit=10,
        period=60.0,
        steps=[
            *many(3, T0, "r"),
            Finish(T0 + 0.2, "r0", answer(9, T0 + 30.2, relative=True)),
            Finish(T0 + 0.9, "r1", answer(8, T0 + 30.4, relative=True)),
            Finish(T0 + 1.3, "r2", answer(7, T0 + 29.6, relative=True)),
            Look(T0 + 1.3, remaining=7, window_seconds=60.0, window_confirmed=False),
        ],
    ),
    Scenario(
        "the window shown: the configured period, then after one Reset an estimate, "
        "after two the server's",
        limit=30,
        period=120.0,
        steps=[
            Look(T0, remaining=30, window_end=None, window_seconds=120, window_confirmed=False),
            Take(T0, "a"),
            # The limit configured, a Reset within the configured period: that period.
            Finish(T0 + 0.5, "a", answer(29, T0 + 6.5, limit=30)),
            Look(T0 + 0.5, remaining=29, window_seconds=120, window_confirmed=False),
            Take(T0 + 6.55, "b"),  # the budget still rolls over by its own short guess
            Look(
                T0 + 6.55,
                remaining=29,
                window_end=T0 + 18.5,
                window_seconds=120,
                window_confirmed=False,
            ),
            Finish(T0 + 7, "b", answer(29, T0 + 126.5, limit=30)),  # the next window
            Look(
                T0 + 7,
                remaining=29,
                window_end=T0 + 126.5,
                window_seconds=120,
                window_confirmed=True,
            ),
        ],
    ),
    Scenario(
        "a server announcing another limit: twice the time to its first Reset, "
        "then the server's window",
        limit=1000,
        period=3600.0,
        steps=[
            Take(T0, "a"),
            Finish(T0, "a", answer(29, T0 + 6.14, limit=30)),
            Look(T0, remaining=29, limit=30, window_seconds=12.28, window_confirmed=False),
            Take(T0 + 6.2, "b"),
            Finish(T0 + 6.3, "b", answer(29, T0 + 126.14, limit=30)),
            Look(T0 + 6.3, remaining=29, window_seconds=120, window_confirmed=True),
        ],
    ),
    Scenario(
        "a first Reset further off than rate_period: twice as far",
        limit=10,
        period=60.0,
        steps=[
            Take(T0, "a"),
            Finish(T0, "a", answer(9, T0 + 100, limit=10)),
            Look(T0, remaining=9, window_seconds=200, window_confirmed=False),
        ],
    ),
    Scenario(
        "a first Reset just past rate_period, as clocks read it, leaves rate_period",
        limit=10,
        period=60.0,
        steps=[
            Take(T0, "a"),
            Finish(T0 + 0.1, "a", answer(9, T0 + 62.1, limit=10, relative=True)),
            Look(T0 + 0.1, remaining=9, window_seconds=60, window_confirmed=False),
        ],
    ),
    Scenario(
        "a report read after its window ended goes with the window",
        limit=10,
        period=60.0,
        steps=[
            Take(T0, "a"),
            Take(T0, "b"),
            Finish(T0, "a", answer(9, T0 + 30)),
            Finish(T0 + 31, "b", answer(0, T0 + 30)),  # that window, read after its end
            Look(T0 + 31, remaining=10),
        ],
    ),
    Scenario(
        "a request in flight across Reset leaves the new window when its answer names the old",
        limit=10,
        period=60.0,
        steps=[
            Take(T0, "a"),
            Take(T0, "b"),
            Finish(T0, "a", answer(8, T0 + 30)),
            Take(T0 + 30.1, "c"),  # the window rolled: b, still in flight, counts in it
            Look(T0 + 30.1, remaining=8),
            Finish(T0 + 31, "b", answer(8, T0 + 30)),  # ... until its answer says otherwise
            Look(T0 + 31, remaining=9),
        ],
    ),
    Scenario(
        "bulk calls leave the reserve to interactive ones",
        limit=20,
        period=60.0,
        reserve=0.1,
        steps=[
            *(Take(T0, f"b{n}", priority="bulk") for n in range(18)),
            Take(T0, "b18", retry_at=T0 + 60, priority="bulk"),
            Take(T0, "i0"),
            Take(T0, "i1"),
            Take(T0, "i2", retry_at=T0 + 60),
        ],
    ),
    Scenario(
        "a grant given back returns to the budget",
        limit=2,
        period=60.0,
        steps=[
            Take(T0, "a"),
            Take(T0 + 1, "b"),
            Take(T0 + 1, "c", retry_at=T0 + 60),
            GiveBack(T0 + 1, "b"),
            Take(T0 + 1, "c"),
            Take(T0 + 1, "d", retry_at=T0 + 60),
        ],
    ),
    Scenario(
        "a pause stops everything until it ends",
        limit=10,
        period=60.0,
        steps=[
            Pause(T0, T0 + 5),
            Take(T0, "a", retry_at=T0 + 5),
            Take(T0 + 5, "a"),
        ],
    ),
    Scenario(
        "smooth pacing spreads the window over what is left",
        limit=10,
        period=10.0,
        smooth=True,
        steps=[
            Take(T0, "a"),
            Take(T0, "b", retry_at=T0 + 1.0),  # 10 s over 10 requests
            Take(T0 + 1.0, "b"),
            Finish(T0 + 1.0, "a", answer(2, T0 + 9.0)),  # others used 8; 8 s to go
            Finish(T0 + 1.0, "b", answer(2, T0 + 9.0)),
            Take(T0 + 2.2, "c"),  # 2 left in 6.8 s: one every 3.4 s
            Take(T0 + 2.2, "d", retry_at=T0 + 2.2 + 3.4),
        ],
    ),
]


StoreFactory = Callable[[Scenario, FakeClock], BudgetStore]


@pytest_asyncio.fixture(params=["memory", "redis"])
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    if request.param == "memory":

        def memory(scenario: Scenario, clock: FakeClock) -> BudgetStore:
            budget = Budget(
                limit=scenario.limit,
                period=scenario.period,
                bulk_reserve=scenario.reserve,
                smooth=scenario.smooth,
            )
            return MemoryStore(budget, clock)

        yield memory
        return
    redis_url: str = request.getfixturevalue("redis_url")
    redis = Redis.from_url(redis_url)
    await redis.flushdb()
    made = 0

    def in_redis(scenario: Scenario, clock: FakeClock) -> BudgetStore:
        nonlocal made
        made += 1
        return RedisStore(
            redis,
            base_url="https://x.test",
            api_key=f"key-{made}",
            prefix="tests",
            rate_limit=scenario.limit,
            rate_period=scenario.period,
            pacing="smooth" if scenario.smooth else "burst",
            bulk_reserve=scenario.reserve,
            reset_margin=0.05,
        )

    yield in_redis
    await redis.aclose()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_window_rules(make_store: StoreFactory, scenario: Scenario) -> None:
    clock = FakeClock(T0)
    store = make_store(scenario, clock)
    granted: dict[str, float] = {}
    for number, step in enumerate(scenario.steps, start=1):
        where = f"step {number}: {step}"
        if isinstance(step, Take):
            retry_at = await store.take(step.priority, step.name, step.at)  # type: ignore[arg-type]
            if step.retry_at is None:
                assert retry_at is None, where
                granted[step.name] = step.at
            else:
                assert retry_at == pytest.approx(step.retry_at), where
        elif isinstance(step, Finish):
            await store.finish(step.name, granted[step.name], step.info, step.at)
        elif isinstance(step, GiveBack):
            await store.give_back(step.name, granted.pop(step.name), step.at)
        elif isinstance(step, Pause):
            await store.pause(step.until, step.at)
        else:
            snapshot = await store.snapshot(step.at)
            assert snapshot.remaining == step.remaining, where
            if step.window_end is not None:
                assert snapshot.window_end == pytest.approx(step.window_end), where
            if step.window_seconds is not None:
                assert snapshot.window_seconds == pytest.approx(step.window_seconds), where
            if step.limit is not None:
                assert snapshot.limit == step.limit, where
            if step.window_confirmed is not None:
                assert snapshot.window_confirmed is step.window_confirmed, where
