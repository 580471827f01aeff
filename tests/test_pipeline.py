"""The request pipeline: grants per attempt, settings checked once, time-aware parsing, hooks.

Each test here pins one defect of the earlier middle of the library (see CHANGELOG).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter
from email.utils import formatdate
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cloudonex_async import (
    Client,
    ConfigurationError,
    Event,
    LocalLimiter,
    OutcomeUnknownError,
    RateLimitError,
    RawResponse,
    Request,
    RetryPolicy,
    TransportError,
)
from cloudonex_async.testing import FakeClock, MockTransport, SandboxServer, json_response

from .conftest import ClientFactory, SandboxFactory, wait_until

T0 = 1_700_000_000.0
KEY = "KEY-9d1f-pipeline-secret"


def mock_client(
    handler: Any, clock: FakeClock | None = None, **options: Any
) -> tuple[Client, MockTransport]:
    transport = MockTransport(handler)
    options.setdefault("limiter", LocalLimiter(clock=clock or FakeClock(T0)))
    options.setdefault("retry", RetryPolicy(attempts=4, backoff_base=0.01, backoff_max=0.05))
    client = Client(base_url="https://crm.example.com", api_key=KEY, transport=transport, **options)
    return client, transport


# -- one grant per attempt: a request that never got a connection was not sent ----------


async def test_requests_waiting_for_a_slot_are_never_counted_as_sent(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    # One connection, four creates, each answer slower than half the timeout: the
    # queued ones wait for a slot, outside the timeout, and none is "unknown".
    sandbox = await make_sandbox(latency=0.3)
    journal = tmp_path / "job.journal"
    async with Client(
        base_url=sandbox.base_url,
        api_key=sandbox.api_key,
        limiter=LocalLimiter(),
        max_concurrency=1,
        timeout=0.5,
    ) as client:
        results = await asyncio.gather(
            *(client.customers.create({"account": f"A{n}"}) for n in range(4)),
            return_exceptions=True,
        )
        assert not any(isinstance(r, Exception) for r in results), results
        job = await client.customers.bulk_create(
            [{"account": f"B{n}"} for n in range(4)],
            batch_size=None,
            concurrency=4,
            journal=str(journal),
        )
    assert [o.status for o in job.outcomes] == ["created"] * 4
    assert sandbox.count("create") == 8
    assert len(sandbox.records("customers")) == 8
    states = Counter(json.loads(line)["s"] for line in journal.read_text().splitlines()[1:])
    assert states == {"sent": 4, "created": 4}  # each "sent" written just before it left


async def test_a_post_that_timed_out_waiting_for_a_pooled_connection_is_not_unknown(
    make_sandbox: SandboxFactory,
) -> None:
    # A borrowed session pools fewer connections than the client's concurrency: the
    # wait for one falls under connect_timeout, and such a request never left.
    sandbox = await make_sandbox(latency=0.4)
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        client = Client(
            base_url=sandbox.base_url,
            api_key=sandbox.api_key,
            limiter=LocalLimiter(),
            session=session,
            max_concurrency=4,
            timeout=2.0,
            connect_timeout=0.1,
            retry=RetryPolicy(attempts=2, backoff_base=0.01, backoff_max=0.01),
        )
        async with client:
            results = await asyncio.gather(
                *(client.customers.create({"account": f"P{n}"}) for n in range(4)),
                return_exceptions=True,
            )
    created = [r for r in results if not isinstance(r, Exception)]
    unsent = [r for r in results if isinstance(r, TransportError) and not r.request_sent]
    assert not [r for r in results if isinstance(r, OutcomeUnknownError)]
    assert len(created) + len(unsent) == 4
    assert unsent  # the pool was too small for all of them
    assert "getting a connection" in str(unsent[0])
    assert sandbox.count("create") == len(created) == len(sandbox.records("customers"))


# -- settings checked once, and never silently dropped ---------------------------------


async def test_a_client_whose_budget_contradicts_the_shared_limiter_is_refused(
    sandbox: SandboxServer,
) -> None:
    site = {"base_url": sandbox.base_url, "api_key": sandbox.api_key}
    async with Client(**site, rate_limit=10) as first:  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="rate_limit=500") as info:
            Client(**site, rate_limit=500, pacing="smooth")  # type: ignore[arg-type]
        assert "pacing='smooth'" in str(info.value)
        with pytest.raises(ConfigurationError, match="clock"):
            Client(**site, clock=FakeClock())  # type: ignore[arg-type]
        async with Client(**site) as second:  # type: ignore[arg-type]
            assert second.limiter is first.limiter
            assert second.config.rate_limit == 10  # the config says what is spent
        own = Client(**site, rate_limit=500, limiter=LocalLimiter(rate_limit=500))  # type: ignore[arg-type]
        assert own.limiter is not first.limiter
        await own.close()
    with pytest.raises(ConfigurationError, match="rate_limit"):
        Client(**site, rate_limit=5, limiter=LocalLimiter(rate_limit=10))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"bulk_reserve": 2.0}, "bulk_reserve"),
        ({"bulk_reserve": -0.1}, "bulk_reserve"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": math.inf}, "timeout"),
        ({"timeout": "30"}, "timeout"),
        ({"timeout": 5, "connect_timeout": 10}, "connect_timeout"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_concurrency": True}, "max_concurrency"),
        ({"max_concurrency": 10**6}, "max_concurrency"),
        ({"max_wait": -1}, "max_wait"),
        ({"max_wait": math.nan}, "max_wait"),
        ({"rate_limit": 0}, "rate_limit"),
        ({"rate_limit": "1000"}, "rate_limit"),
        ({"rate_period": 0}, "rate_period"),
        ({"pacing": "fast"}, "pacing"),
        ({"retry": RetryPolicy(attempts=0)}, "attempts"),
        ({"retry": RetryPolicy(backoff_base=5, backoff_max=1)}, "backoff"),
        ({"user_agent": "a\nb"}, "user_agent"),
        ({"auth": "basic"}, "auth"),
        ({"profile": "legacy"}, "profile"),
        ({"route_style": "query"}, "route_style"),
        ({"item_paths": "both"}, "item_paths"),
        ({"body_encoding": "xml"}, "body_encoding"),
        ({"event_hooks": [1]}, "event_hooks"),
        ({"limiter": "shared"}, "limiter"),
    ],
)
async def test_out_of_range_options_are_refused_at_construction(
    options: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigurationError, match=named):
        Client(base_url="https://crm.example.com", api_key="k", **options)


async def test_a_per_call_max_wait_is_checked_too(sandbox: SandboxServer) -> None:
    async with Client(base_url=sandbox.base_url, api_key=sandbox.api_key) as client:
        with pytest.raises(ConfigurationError, match="max_wait"):
            await client.request("GET", "customers", max_wait=-5)
    assert sandbox.count() == 0


# -- answers read against the time they arrived ---------------------------------------


async def test_a_429_with_a_relative_reset_says_when_in_this_century() -> None:
    clock = FakeClock(T0)

    def handler(request: Request) -> RawResponse:
        return json_response(
            {"success": False, "message": "Rate limit exceeded"},
            status=429,
            headers={
                "X-RateLimit-Limit": "50",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": "30",
            },
        )

    client, _ = mock_client(handler, clock, retry=RetryPolicy(attempts=1))
    async with client:
        with pytest.raises(RateLimitError) as info:
            await client.request("GET", "customers")
    assert info.value.reset_at is not None
    assert info.value.reset_at.tzinfo is not None
    assert info.value.reset_at.timestamp() == pytest.approx(T0 + 30)
    assert (info.value.limit, info.value.remaining) == (50, 0)


async def test_a_429_with_a_dated_retry_after_pauses_until_that_date() -> None:
    clock = FakeClock(T0)
    answers = [
        json_response(
            {"success": False, "message": "slow down"},
            status=429,
            headers={
                "Retry-After": formatdate(T0 + 45, usegmt=True),
                "Date": formatdate(T0, usegmt=True),
            },
        ),
        json_response({"success": True, "data": []}),
    ]
    client, transport = mock_client(lambda request: answers.pop(0), clock)
    async with client:
        assert await client.request("GET", "customers") == []
    assert len(transport.requests) == 2
    # Not the whole rate_period (an hour): the 45 s the server asked for.
    assert clock.time() == pytest.approx(T0 + 45, abs=1)


async def test_a_post_answered_503_with_a_dated_retry_after_is_sent_again() -> None:
    clock = FakeClock(T0)
    answers = [
        json_response(
            {"success": False, "message": "maintenance"},
            status=503,
            headers={"Retry-After": formatdate(T0 + 2, usegmt=True)},
        ),
        json_response({"success": True, "data": {"id": 7, "account": "Jane"}}, status=201),
    ]
    client, transport = mock_client(lambda request: answers.pop(0), clock)
    async with client:
        customer = await client.customers.create({"account": "Jane"})
    assert customer.id == 7
    assert [r.method for r in transport.requests] == ["POST", "POST"]
    assert clock.time() == pytest.approx(T0 + 2, abs=1)


# -- hooks ------------------------------------------------------------------------------


async def test_hooks_see_a_retry_a_wait_and_a_429_and_never_the_key() -> None:
    clock = FakeClock(T0)
    queue = [
        json_response({"success": False, "message": "busy"}, status=503),
        json_response({"success": True, "data": []}, headers={"X-RateLimit-Remaining": "5"}),
        json_response(
            {"success": False, "message": "slow down"}, status=429, headers={"Retry-After": "10"}
        ),
        json_response({"success": True, "data": []}),
        json_response({"success": True, "data": []}),
    ]
    events: list[Event] = []
    client, _ = mock_client(
        lambda request: queue.pop(0),
        clock,
        auth="query",  # the key travels in the URL: it must still never show
        limiter=LocalLimiter(rate_limit=2, rate_period=60, clock=clock),
        event_hooks=[events.append],
    )
    async with client:
        await client.request("GET", "customers")  # a 503, retried
        await client.request("GET", "customers/7")  # a 429, paused, retried
        await client.request("GET", "customers")  # the budget of 2 per 60 s: waits
    kinds = Counter(e.kind for e in events)
    assert kinds["retry_scheduled"] == 2
    assert kinds["rate_limited"] == 1
    assert kinds["budget_wait_started"] == kinds["budget_wait_ended"] >= 1
    assert kinds["request_sent"] == kinds["response_received"] == 5
    retry = next(e for e in events if e.kind == "retry_scheduled")
    assert (retry.method, retry.path, retry.attempt, retry.reason) == (
        "GET",
        "customers",
        1,
        "HTTP 503",
    )
    limited = next(e for e in events if e.kind == "rate_limited")
    assert (limited.status, limited.seconds, limited.path) == (429, 10.0, "customers/7")
    waited = [e.seconds for e in events if e.kind == "budget_wait_ended"]
    assert waited
    assert all(s is not None and s > 0 for s in waited)
    answered = [e for e in events if e.kind == "response_received"]
    assert [e.status for e in answered] == [503, 200, 429, 200, 200]
    assert answered[1].remaining == 5
    for event in events:
        assert KEY not in repr(event)


async def test_a_broken_hook_does_not_break_the_call(caplog: pytest.LogCaptureFixture) -> None:
    def broken(event: Event) -> None:
        raise RuntimeError("metrics backend down")

    client, _ = mock_client(
        lambda request: json_response({"success": True, "data": []}), event_hooks=[broken]
    )
    async with client:
        assert await client.request("GET", "customers") == []
    assert "event hook" in caplog.text


# -- the ETA of a bulk job follows the server's window ---------------------------------


async def test_a_bulk_jobs_eta_under_a_binding_budget_is_close_to_how_long_it_took(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    # Time moves only when nothing is in flight, as with a real clock and short
    # requests: the job waits for 5 s windows, its requests take no time.
    clock = FakeClock(T0, auto_advance=False)
    # The client is told nothing about the window: 10 requests per 5 s, from the server.
    sandbox = await make_sandbox(rate_limit=10, rate_period=5, clock=clock)
    flight = Counter[str]()
    client = make_client(
        sandbox,
        limiter=LocalLimiter(bulk_reserve=0.0, clock=clock),
        event_hooks=[lambda event: flight.update([event.kind])],
    )
    seen: list[tuple[float, float | None]] = []
    job = asyncio.ensure_future(
        client.customers.bulk_create(
            ({"account": f"E{n}"} for n in range(100)),
            batch_size=None,
            concurrency=4,
            total=100,
            on_progress=lambda p: seen.append((clock.time(), p.eta_seconds)),
        )
    )

    def idle() -> bool:
        in_flight = flight["request_sent"] - flight["response_received"]
        return job.done() or (in_flight == 0 and clock.sleeping > 0)

    while not job.done():
        await wait_until(idle)
        clock.advance_to_next()
    result = await job
    assert len(result.succeeded) == 100
    end = clock.time()
    assert end - T0 == pytest.approx(45, abs=1)  # 100 at 10 per 5 s: ten windows
    checked = 0
    for at, eta in seen[10:]:  # once the server's window is known
        assert eta is not None
        actual = end - at
        assert abs(eta - actual) <= max(0.25 * actual, 1.0), (at - T0, eta, actual)
        checked += 1
    assert checked == 90
