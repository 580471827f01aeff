"""A call's time is its own: bounded by its own settings, whatever other calls meet.

Silent and stalling servers, fail-fast from the first request, Clients of one key,
a failing budget store, a prompt close, per-call options and event loops.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import warnings
from collections.abc import Awaitable

import pytest

from cloudonex_async import (
    BudgetStoreError,
    Client,
    ConfigurationError,
    LocalLimiter,
    OutcomeUnknownError,
    PoolTimeoutError,
    RateLimitError,
    RawResponse,
    Request,
    RequestTimeoutError,
    RetryPolicy,
    ServerError,
)
from cloudonex_async._budget import Budget, BudgetSnapshot, Priority
from cloudonex_async._protocol import RateLimitInfo
from cloudonex_async.limiters import BaseLimiter, MemoryStore
from cloudonex_async.testing import FakeClock, MockTransport, SandboxServer, json_response

from .conftest import ClientFactory, Handler, SandboxFactory, raw_server, wait_until

T0 = 1_700_000_000.0
ONE_TRY = RetryPolicy(attempts=1)
SLACK = 0.5  # scheduling on a busy 2-core machine; the old code was off by whole timeouts


def silent(*, partial: bool = False) -> Handler:
    """A server that accepts connections and never answers (or stalls mid-body)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if partial:
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n"
                b'{"success": true, '
            )
            await writer.drain()
        await asyncio.Event().wait()  # until the server is torn down

    return serve


async def timed(call: Awaitable[object]) -> tuple[float, BaseException | None]:
    """How long ``call`` took, and what it raised."""
    started = time.monotonic()
    try:
        await call
    except Exception as error:
        return time.monotonic() - started, error
    return time.monotonic() - started, None


# -- silent and stalling servers --------------------------------------------------------


async def test_ten_calls_to_a_silent_server_each_end_on_their_own_timeout() -> None:
    # The old client sent one request at a time until the first answer: they ended
    # at 1, 2, 3 ... 10 s.
    async with (
        raw_server(silent()) as url,
        Client(base_url=url, api_key="k" * 32, timeout=1.0, retry=ONE_TRY) as client,
    ):
        results = await asyncio.gather(*(timed(client.customers.get(n)) for n in range(1, 11)))
    for seconds, error in results:
        assert isinstance(error, RequestTimeoutError)
        assert seconds < 1.0 + 0.1 + SLACK  # its timeout, plus the hold for the first answer


async def test_a_stall_mid_body_and_a_concurrent_create_each_keep_their_own_bounds() -> None:
    retry = RetryPolicy(attempts=2, backoff_base=0.01, backoff_max=0.01)
    async with (
        raw_server(silent(partial=True)) as url,
        Client(base_url=url, api_key="k" * 32, timeout=1.0, retry=retry) as client,
    ):
        (get_seconds, get_error), (create_seconds, create_error) = await asyncio.gather(
            timed(client.customers.get(1)),
            timed(client.customers.create({"account": "Jane"})),
        )
    assert isinstance(get_error, RequestTimeoutError)
    assert get_seconds < 2 * 1.0 + 0.01 + SLACK  # two attempts of its own
    assert isinstance(create_error, OutcomeUnknownError)  # a create is not sent twice
    assert create_seconds < 1.0 + 0.1 + SLACK


# -- slots ------------------------------------------------------------------------------


def gated(gate: asyncio.Event) -> MockTransport:
    """A transport whose answers wait for ``gate`` (requests in flight until then)."""

    async def answer(request: Request) -> RawResponse:
        await gate.wait()
        return json_response({"success": True, "data": {"id": 1, "account": "Jane"}})

    return MockTransport(answer)


def instant() -> MockTransport:
    return MockTransport(
        lambda request: json_response({"success": True, "data": {"id": 1, "account": "Jane"}})
    )


async def test_max_wait_bounds_a_wait_for_a_concurrency_slot() -> None:
    gate = asyncio.Event()
    clock = FakeClock(T0)
    async with Client(
        base_url="https://x.test",
        api_key="k" * 32,
        transport=gated(gate),
        max_concurrency=1,
        limiter=LocalLimiter(clock=clock),
    ) as client:
        first = asyncio.ensure_future(client.customers.get(1))
        await wait_until(lambda: client.limiter.statistics_nowait().requests_sent == 1)
        with pytest.raises(PoolTimeoutError) as error:
            await client.with_options(max_wait=1).customers.get(2)
        assert error.value.request_sent is False
        assert "max_concurrency" in str(error.value)
        assert clock.time() == pytest.approx(T0 + 1)
        gate.set()
        await first


async def test_a_client_with_free_slots_never_waits_behind_another_clients_queue() -> None:
    gate = asyncio.Event()
    url, key = "https://x.test", "k" * 32
    slow = gated(gate)
    async with (
        Client(base_url=url, api_key=key, transport=instant()) as b,
        Client(base_url=url, api_key=key, transport=slow, max_concurrency=1) as a,
    ):
        assert a.limiter is b.limiter  # one key, one budget
        await b.customers.get(1)  # the first answer: the window is known
        queued = [asyncio.ensure_future(a.customers.get(1)) for _ in range(6)]
        await wait_until(lambda: len(slow.requests) == 1)
        for _ in range(5):
            await asyncio.sleep(0)  # A's other five queue for its only slot
        # B's six calls go at once, while A's five wait for A's only slot.
        await asyncio.wait_for(asyncio.gather(*(b.customers.get(1) for _ in range(6))), 5)
        assert not any(task.done() for task in queued)
        gate.set()
        await asyncio.gather(*queued)


async def test_a_freed_slot_goes_to_its_clients_waiters_in_priority_order_across_clients() -> None:
    # Priorities hold across Clients of the key: with the budget down to its reserve,
    # an interactive call of a slot-bound client goes; a bulk call of a free one waits.
    clock = FakeClock(T0, auto_advance=False)
    limiter = LocalLimiter(rate_limit=10, rate_period=60, bulk_reserve=0.5, clock=clock)
    url, key = "https://x.test", "k" * 32
    async with Client(base_url=url, api_key=key, transport=instant(), limiter=limiter) as b:
        for _ in range(5):
            await b.customers.get(1)
        bulk = asyncio.ensure_future(b.customers.get(1, priority="bulk"))
        await wait_until(lambda: clock.sleeping == 1)  # the reserve is not bulk's
        assert await b.customers.get(1)  # interactive: served from the reserve
        assert not bulk.done()
        clock.advance(60.05)
        await bulk


# -- fail-fast ----------------------------------------------------------------------------


async def test_fail_fast_sends_everything_the_budget_allows_from_the_first_request(
    make_sandbox: SandboxFactory,
) -> None:
    clock = FakeClock(T0)
    sandbox = await make_sandbox(rate_limit=30, rate_period=60, clock=clock)
    async with Client(
        base_url=sandbox.base_url, api_key=sandbox.api_key, max_wait=0, clock=clock
    ) as client:
        await asyncio.gather(*(client.request("GET", "customers") for _ in range(30)))
        with pytest.raises(RateLimitError) as raised:
            await client.request("GET", "customers")
    assert sandbox.count() == 30  # none refused by a 429 either
    error = raised.value
    assert error.remaining == 0
    assert error.limit == 30
    assert error.retry_after is not None
    assert 0 < error.retry_after <= 60.1
    assert error.reset_at is not None
    assert error.reset_at.tzinfo is not None
    assert error.reset_at.timestamp() == pytest.approx(clock.time() + error.retry_after)
    assert "30 requests per window is spent" in str(error)
    assert f"{error.retry_after:.1f} s" in str(error)


async def test_fail_fast_raises_at_once_on_a_429_that_asks_for_a_wait(
    make_sandbox: SandboxFactory,
) -> None:
    clock = FakeClock(T0)
    sandbox = await make_sandbox(rate_limit=1000, rate_period=3600, clock=clock)
    sandbox.inject("error", status=429, retry_after=30)
    async with Client(
        base_url=sandbox.base_url, api_key=sandbox.api_key, max_wait=0, clock=clock
    ) as client:
        with pytest.raises(RateLimitError) as raised:
            await client.request("GET", "customers")
    assert raised.value.retry_after == pytest.approx(30)
    assert clock.time() == T0  # it did not wait
    assert sandbox.count() == 1


# -- a failing budget store ----------------------------------------------------------------


class FlakyStore:
    """A budget store that fails when told to (as Redis does when it goes away)."""

    def __init__(self, clock: FakeClock) -> None:
        self.inner = MemoryStore(Budget(limit=100, period=3600), clock)
        self.fail: set[str] = set()

    def _check(self, step: str) -> None:
        if step in self.fail:
            raise ConnectionError(f"the store is down ({step})")

    async def _call(self, step: str) -> None:
        await asyncio.sleep(0)  # a round trip, as to Redis: other calls run meanwhile
        self._check(step)

    async def take(self, priority: Priority, grant_id: str, now: float) -> float | None:
        await self._call("take")
        return await self.inner.take(priority, grant_id, now)

    async def give_back(self, grant_id: str, granted_at: float, now: float) -> None:
        await self._call("give_back")
        await self.inner.give_back(grant_id, granted_at, now)

    async def finish(
        self, grant_id: str, granted_at: float, info: RateLimitInfo | None, now: float
    ) -> None:
        await self._call("finish")
        await self.inner.finish(grant_id, granted_at, info, now)

    async def pause(self, until: float, now: float) -> None:
        await self._call("pause")
        await self.inner.pause(until, now)

    async def snapshot(self, now: float) -> BudgetSnapshot:
        await self._call("snapshot")
        return await self.inner.snapshot(now)

    def last_snapshot(self) -> BudgetSnapshot:
        return self.inner.last_snapshot()


async def on_flaky_store(
    make_sandbox: SandboxFactory,
) -> tuple[SandboxServer, FlakyStore, BaseLimiter]:
    """A sandbox, and a limiter whose budget store fails when told to; one fake clock."""
    clock = FakeClock(T0)
    sandbox = await make_sandbox(clock=clock)
    store = FlakyStore(clock)
    return sandbox, store, BaseLimiter(store, rate_limit=100, rate_period=3600, clock=clock)


async def test_a_store_that_fails_as_a_grant_ends_loses_no_answer(
    make_sandbox: SandboxFactory, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox, store, limiter = await on_flaky_store(make_sandbox)
    async with Client(base_url=sandbox.base_url, api_key=sandbox.api_key, limiter=limiter) as c:
        store.fail.add("finish")
        with caplog.at_level(logging.WARNING, logger="cloudonex_async"):
            created = await c.customers.create({"account": "Jane"})
        assert created.account == "Jane"
        assert sandbox.count("create") == 1
        assert "the budget store failed while ending a request" in caplog.text
        assert store.inner.budget.in_flight  # counted as in flight: the safe side
        store.fail.clear()
        assert created.id is not None
        await c.customers.get(created.id)  # the store answers: the report is delivered
        assert not store.inner.budget.in_flight


async def test_a_store_that_fails_before_sending_raises_a_not_sent_error(
    make_sandbox: SandboxFactory,
) -> None:
    sandbox, store, limiter = await on_flaky_store(make_sandbox)
    async with Client(base_url=sandbox.base_url, api_key=sandbox.api_key, limiter=limiter) as c:
        store.fail.add("take")
        with pytest.raises(BudgetStoreError) as raised:
            await c.customers.create({"account": "Jane"})
        assert raised.value.request_sent is False
        assert "nothing was sent" in str(raised.value)
        assert isinstance(raised.value.__cause__, ConnectionError)
        assert sandbox.count("create") == 0
        store.fail.clear()
        await c.customers.create({"account": "Jane"})  # and the next call goes
        assert sandbox.count("create") == 1


# -- closing ----------------------------------------------------------------------------


async def test_closing_wakes_every_call_waiting_for_budget_slots_or_a_retry() -> None:
    gate = asyncio.Event()
    clock = FakeClock(T0, auto_advance=False)
    limiter = LocalLimiter(rate_limit=3, rate_period=120, clock=clock)
    calls = 0

    async def answer(request: Request) -> RawResponse:
        nonlocal calls
        calls += 1
        if request.path == "customers/9":
            return json_response({"success": False, "message": "busy"}, 503, {"Retry-After": "100"})
        await gate.wait()
        return json_response({"success": True, "data": {"id": 1, "account": "Jane"}})

    client = Client(
        base_url="https://x.test",
        api_key="k" * 32,
        transport=MockTransport(answer),
        limiter=limiter,
        max_concurrency=2,
    )
    other = Client(
        base_url="https://x.test", api_key="k" * 32, transport=instant(), limiter=limiter
    )
    retrying = asyncio.ensure_future(client.customers.get(9))  # sleeps 100 s before retrying
    await wait_until(lambda: clock.sleeping == 1)
    in_flight = [asyncio.ensure_future(client.customers.get(1)) for _ in range(2)]
    waiting = [asyncio.ensure_future(client.customers.get(1)) for _ in range(5)]
    bystander = asyncio.ensure_future(other.customers.get(1))  # another Client's wait
    await wait_until(lambda: limiter.statistics_nowait().waits >= 6)
    await client.close()
    for task in [retrying, *waiting]:
        with pytest.raises(ConfigurationError, match="closed"):
            await asyncio.wait_for(task, 1)
    gate.set()  # requests already on their way keep their answers
    await asyncio.gather(*in_flight)
    assert not bystander.done()  # the other Client's call still waits for Reset
    clock.advance(120)
    await asyncio.wait_for(bystander, 1)
    await other.close()


# -- with_options -------------------------------------------------------------------------


async def test_with_options_timeout_applies_to_the_views_calls_only() -> None:
    async with (
        raw_server(silent()) as url,
        Client(base_url=url, api_key="k" * 32, timeout=30.0, retry=ONE_TRY) as client,
    ):
        quick = client.with_options(timeout=0.3)
        seconds, error = await timed(quick.customers.get(1))
        assert isinstance(error, RequestTimeoutError)
        assert seconds < 0.3 + SLACK
        slow = asyncio.ensure_future(client.customers.get(1))
        await asyncio.sleep(0.3 + SLACK)
        assert not slow.done()  # the client's own 30 s
        slow.cancel()


async def test_with_options_retry_and_the_client_keep_their_own_policies(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await make_sandbox()
    client = make_client(sandbox)  # four attempts
    sandbox.inject("error", status=500, count=1)
    with pytest.raises(ServerError):
        await client.with_options(retry=ONE_TRY).customers.list().collect()
    assert sandbox.count() == 1
    sandbox.inject("error", status=500, count=1)
    await client.customers.list().collect()  # retried
    assert [r.status for r in sandbox.requests] == [500, 500, 200]


async def test_with_options_max_wait_and_priority(make_sandbox: SandboxFactory) -> None:
    clock = FakeClock(T0)
    sandbox = await make_sandbox(rate_limit=10, rate_period=60, clock=clock)
    limiter = LocalLimiter(rate_limit=10, rate_period=60, bulk_reserve=0.5, clock=clock)
    async with Client(base_url=sandbox.base_url, api_key=sandbox.api_key, limiter=limiter) as c:
        for _ in range(5):
            await c.request("GET", "customers")
        background = c.with_options(priority="bulk", max_wait=0)
        with pytest.raises(RateLimitError, match="bulk_reserve"):
            await background.customers.list().collect()  # bulk leaves the reserve
        await c.with_options(max_wait=0).request("GET", "customers")  # interactive goes
        for _ in range(4):
            await c.request("GET", "customers")
        with pytest.raises(RateLimitError) as raised:
            await c.with_options(max_wait=5).customers.get(1)
        assert clock.time() < T0 + 60  # refused at once: the budget returns later
        assert raised.value.retry_after is not None
        assert raised.value.retry_after > 5
        assert raised.value.reset_at is not None
        await c.customers.list().collect()  # the client's own max_wait (None) waits
        assert clock.time() >= raised.value.reset_at.timestamp()


async def test_a_view_shares_the_clients_budget_and_session_and_closes_with_it() -> None:
    transport = instant()
    client = Client(base_url="https://x.test", api_key="k" * 32, transport=transport)
    view = client.with_options(timeout=3)
    await view.customers.get(1)
    await client.customers.get(1)
    assert view.limiter is client.limiter
    assert client.rate_limit.requests_sent == 2
    assert len(transport.requests) == 2
    assert transport.requests[0].timeout == 3
    assert transport.requests[1].timeout is None
    await view.close()  # does nothing: the view owns nothing
    await client.customers.get(1)
    await client.close()
    assert view.closed
    with pytest.raises(ConfigurationError, match="closed"):
        await view.customers.get(1)
    with pytest.raises(ConfigurationError, match="timeout"):
        client.with_options(timeout=0)
    with pytest.raises(ConfigurationError, match="priority"):
        client.with_options(priority="urgent")  # type: ignore[arg-type]


# -- event loops ---------------------------------------------------------------------------


def test_a_client_used_in_a_second_event_loop_says_to_create_one_per_loop() -> None:
    client = Client(base_url="https://x.test", api_key="k" * 32, transport=instant())
    asyncio.run(client.customers.get(1))
    with pytest.raises(ConfigurationError, match="one Client per event loop"):
        asyncio.run(client.customers.get(1))


async def test_a_client_collected_unclosed_gives_one_warning_of_its_own(
    make_sandbox: SandboxFactory,
) -> None:
    sandbox = await make_sandbox()
    client = Client(base_url=sandbox.base_url, api_key=sandbox.api_key)
    await client.customers.list().collect()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del client
        gc.collect()
        await asyncio.sleep(0)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    assert "was never closed" in messages[0]
    assert "async with" in messages[0]
    assert caught[0].category is ResourceWarning


# -- where the hold, a 429, a cancel and a close meet ---------------------------------------


def windowed(limit: int, clock: FakeClock, sent: list[float]) -> MockTransport:
    """A server allowing ``limit`` requests in a 60 s window that began at T0."""
    reset = str(int(T0) + 60)

    def answer(request: Request) -> RawResponse:
        sent.append(clock.time())
        headers = {"X-RateLimit-Limit": str(limit), "X-RateLimit-Reset": reset}
        if len(sent) > limit:
            headers.update({"X-RateLimit-Remaining": "0", "Retry-After": "60"})
            return json_response({"success": False, "message": "Too many"}, 429, headers)
        headers["X-RateLimit-Remaining"] = str(limit - len(sent))
        return json_response({"success": True, "data": {"id": 1, "account": "Jane"}}, 200, headers)

    return MockTransport(answer)


async def test_a_429_to_the_first_request_pauses_the_calls_it_held_back() -> None:
    clock = FakeClock(T0, auto_advance=False)
    gate = asyncio.Event()
    sent: list[float] = []

    async def answer(request: Request) -> RawResponse:
        sent.append(clock.time())
        if len(sent) == 1:
            await gate.wait()
        headers = {"Retry-After": "60"}  # and no budget headers to learn from
        return json_response({"success": False, "message": "Too many"}, 429, headers)

    client = Client(
        base_url="https://x.test",
        api_key="k" * 32,
        transport=MockTransport(answer),
        limiter=LocalLimiter(clock=clock),
        retry=RetryPolicy(attempts=2, backoff_base=0.01, backoff_max=0.01),
    )
    calls = [asyncio.ensure_future(client.customers.get(1)) for _ in range(6)]
    await wait_until(lambda: len(sent) == 1)
    for _ in range(5):
        await asyncio.sleep(0)  # the other five hold back for its answer
    gate.set()
    await wait_until(lambda: clock.sleeping >= 1)
    for _ in range(10):
        await asyncio.sleep(0)
    assert len(sent) == 1  # none of them went into the same 429: they wait out its pause
    await client.close()
    await asyncio.gather(*calls, return_exceptions=True)


async def test_a_first_request_cancelled_before_it_left_hands_the_hold_on() -> None:
    clock = FakeClock(T0, auto_advance=False)  # holds and windows end only by answers
    sent: list[float] = []
    gate = asyncio.Event()
    async with Client(
        base_url="https://x.test",
        api_key="k" * 32,
        transport=windowed(3, clock, sent),
        limiter=LocalLimiter(clock=clock),
        max_wait=5,
    ) as client:

        async def never_sent() -> None:
            await gate.wait()

        probe = asyncio.ensure_future(client.call("GET", "customers/1", on_send=never_sent))
        await wait_until(lambda: client.rate_limit.requests_sent == 1)
        held = [asyncio.ensure_future(client.customers.get(1)) for _ in range(8)]
        for _ in range(5):
            await asyncio.sleep(0)
        probe.cancel()
        results = await asyncio.gather(*held, return_exceptions=True)
    # The next caller learned the window (3 per 60 s); no burst met a 429.
    assert len(sent) == 3
    assert sum(1 for r in results if isinstance(r, RateLimitError)) == 5
    assert all(r.status == 0 for r in results if isinstance(r, RateLimitError))


async def test_a_call_handed_its_grant_as_the_client_closes_is_not_sent() -> None:
    gate = asyncio.Event()
    transport = gated(gate)
    client = Client(
        base_url="https://x.test", api_key="k" * 32, transport=transport, max_concurrency=1
    )
    first = asyncio.ensure_future(client.customers.get(1))
    await wait_until(lambda: len(transport.requests) == 1)
    journaled: list[str] = []

    async def journal() -> None:
        journaled.append("sent")

    second = asyncio.ensure_future(client.call("GET", "customers/1", on_send=journal))
    await wait_until(lambda: client.limiter.statistics_nowait().waits == 1)
    gate.set()
    await first  # its slot goes to the second call, which has not run yet
    await client.close()
    with pytest.raises(ConfigurationError, match="closed"):
        await second
    assert journaled == []
    assert len(transport.requests) == 1
    assert client.rate_limit.requests_sent == 1  # the second grant was given back


async def test_reports_the_store_missed_are_delivered_once_under_concurrent_calls(
    make_sandbox: SandboxFactory,
) -> None:
    sandbox, store, limiter = await on_flaky_store(make_sandbox)
    async with Client(
        base_url=sandbox.base_url, api_key=sandbox.api_key, limiter=limiter, max_wait=0
    ) as c:
        store.fail.add("finish")
        await asyncio.gather(*(c.request("GET", "customers") for _ in range(5)))
        assert len(store.inner.budget.in_flight) == 5
        store.fail.clear()
        await asyncio.gather(*(c.request("GET", "customers") for _ in range(10)))
    assert not store.inner.budget.in_flight  # each missed report delivered, once
    assert sandbox.count() == 15


async def test_a_write_closed_before_its_retry_ends_with_its_uncertain_last_attempt() -> None:
    clock = FakeClock(T0, auto_advance=False)

    def lost(request: Request) -> RawResponse:
        raise RequestTimeoutError("no answer", request_sent=True)  # it may have been done

    client = Client(
        base_url="https://x.test",
        api_key="k" * 32,
        transport=MockTransport(lost),
        limiter=LocalLimiter(clock=clock),
        retry=RetryPolicy(attempts=3, backoff_base=10, backoff_max=10),
    )
    update = asyncio.ensure_future(client.customers.update(1, {"account": "Jane"}))
    await wait_until(lambda: clock.sleeping == 1)  # waiting to send it again
    await client.close()
    with pytest.raises(RequestTimeoutError) as raised:  # its last attempt's error...
        await asyncio.wait_for(update, 1)
    assert raised.value.request_sent  # ...which says it may have been carried out
