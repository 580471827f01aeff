"""Listings against the sandbox: every end condition, early stops, prefetch, concurrency."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import pytest_asyncio

from cloudonex_async import (
    Client,
    Customer,
    LocalLimiter,
    PaginationError,
    RawResponse,
    Request,
)
from cloudonex_async.testing import MockTransport, SandboxServer, json_response

from .conftest import ClientFactory, SandboxFactory, wait_until


def seed(sandbox: SandboxServer, count: int) -> None:
    sandbox.seed(
        "customers", [{"account": f"C{n}", "email": f"c{n}@example.com"} for n in range(count)]
    )


def pages_requested(sandbox: SandboxServer) -> list[int]:
    return [int(r.params["page"]) for r in sandbox.requests if r.action == "list"]


@pytest.mark.parametrize(
    ("paging", "records", "expected_pages"),
    [
        ("meta", 250, [1, 2, 3]),  # metadata says three pages
        ("meta", 200, [1, 2]),  # ... and no empty page is fetched after a full last page
        ("total_records", 250, [1, 2, 3]),  # the record count alone says it too
        # No metadata: a short page may be a silent cap, so only an empty page ends it.
        ("plain", 250, [1, 2, 3, 4]),
        ("plain", 200, [1, 2, 3]),
        ("plain", 0, [1]),  # empty listing
        ("ignore", 250, [1, 2]),  # everything at once, then again: the repeat ends it
        ("ignore", 100, [1, 2]),
    ],
)
async def test_end_conditions(
    make_sandbox: SandboxFactory,
    make_client: ClientFactory,
    paging: str,
    records: int,
    expected_pages: list[int],
) -> None:
    sandbox = await make_sandbox(paging=paging)
    seed(sandbox, records)
    client = make_client(sandbox)
    items = await client.customers.list(page_size=100).collect()
    assert [c.account for c in items] == [f"C{n}" for n in range(records)]
    assert pages_requested(sandbox) == expected_pages


async def test_a_server_repeating_a_page_is_an_error_not_a_loop(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await make_sandbox(paging="stuck")
    seed(sandbox, 30)
    client = make_client(sandbox)
    with pytest.raises(PaginationError, match="page 2 repeats page 1"):
        await client.customers.list(page_size=10).collect()
    assert len(pages_requested(sandbox)) <= 3  # page 2, and at most one prefetched


async def test_pages_report_numbers_and_totals(
    sandbox: SandboxServer, make_client: ClientFactory
) -> None:
    seed(sandbox, 25)
    client = make_client(sandbox)
    pages = [page async for page in client.customers.list(page_size=10).pages()]
    assert [(p.number, len(p.items), p.total_records, p.total_pages) for p in pages] == [
        (1, 10, 25, 3),
        (2, 10, 25, 3),
        (3, 5, 25, 3),
    ]
    assert all(isinstance(c, Customer) for p in pages for c in p.items)


async def test_limit_stops_without_fetching_a_page_more(
    sandbox: SandboxServer, make_client: ClientFactory
) -> None:
    seed(sandbox, 500)
    client = make_client(sandbox)
    items = await client.customers.list(page_size=100, limit=150, prefetch=4).collect()
    assert len(items) == 150
    assert pages_requested(sandbox) == [1, 2]
    assert [r.params["limit"] for r in sandbox.requests] == ["100", "100"]


async def test_filters_and_search_pass_through(
    sandbox: SandboxServer, make_client: ClientFactory
) -> None:
    sandbox.seed(
        "invoices",
        [
            {"customer_id": 1, "status": "Paid"},
            {"customer_id": 2, "status": "Unpaid"},
            {"customer_id": 1, "status": "Unpaid"},
        ],
    )
    seed(sandbox, 12)
    client = make_client(sandbox)
    unpaid = await client.invoices.list(status="Unpaid", customer_id=1).collect()
    assert [(i.customer_id, i.status) for i in unpaid] == [(1, "Unpaid")]
    found = await client.customers.list(search="C1").collect()
    assert sorted(c.account or "" for c in found) == ["C1", "C10", "C11"]
    assert sandbox.requests[0].params == {
        "status": "Unpaid",
        "customer_id": "1",
        "page": "1",
        "limit": "100",
    }


async def test_each_list_call_is_a_fresh_walk(
    sandbox: SandboxServer, make_client: ClientFactory
) -> None:
    seed(sandbox, 3)
    client = make_client(sandbox)
    listing = client.customers.list()
    assert len(await listing.collect()) == 3
    seed(sandbox, 2)
    assert len(await listing.collect()) == 5


async def test_prefetch_requests_the_next_page_while_the_caller_works(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await make_sandbox(latency=0.01)
    seed(sandbox, 30)
    client = make_client(sandbox)
    async for page in client.customers.list(page_size=10, prefetch=1).pages():
        if page.number == 1:
            # Still holding page 1: the request for page 2 reaches the server regardless.
            await wait_until(lambda: sandbox.count("list") == 2)
    assert pages_requested(sandbox) == [1, 2, 3]


async def test_without_prefetch_nothing_is_requested_ahead(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await make_sandbox(latency=0.005)
    seed(sandbox, 30)
    client = make_client(sandbox)
    async for page in client.customers.list(page_size=10, prefetch=0).pages():
        for _ in range(10):
            await asyncio.sleep(0.005)
        assert sandbox.count("list") == page.number


async def test_concurrent_walk_fetches_at_once_and_yields_in_order(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await make_sandbox(latency=0.02)
    seed(sandbox, 400)
    client = make_client(sandbox)
    seen_in_flight = 0

    async def watch() -> None:
        nonlocal seen_in_flight
        while True:
            in_flight = sum(1 for r in sandbox.requests if r.status == 0)
            seen_in_flight = max(seen_in_flight, in_flight)
            await asyncio.sleep(0.002)

    watcher = asyncio.ensure_future(watch())
    items = await client.customers.list(page_size=20, concurrency=8).collect()
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    assert [c.account for c in items] == [f"C{n}" for n in range(400)]
    assert sorted(pages_requested(sandbox)) == list(range(1, 21))
    assert seen_in_flight >= 4  # several pages were in flight together


def pending_tasks() -> set[str]:
    """Unfinished tasks of the client side (the sandbox's connection handlers aside)."""
    names = set()
    for task in asyncio.all_tasks():
        name = getattr(task.get_coro(), "__qualname__", "")
        if task is not asyncio.current_task() and not task.done() and "RequestHandler" not in name:
            names.add(f"{name}@{id(task)}")
    return names


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@pytest_asyncio.fixture
async def slow(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> tuple[SandboxServer, Client]:
    """A sandbox answering after 50 ms, with 100 customers, and a client of it."""
    sandbox = await make_sandbox(latency=0.05)
    seed(sandbox, 100)
    return sandbox, make_client(sandbox)


async def test_breaking_out_early_leaves_no_fetch_running(
    slow: tuple[SandboxServer, Client],
) -> None:
    sandbox, client = slow
    before = pending_tasks()
    async for customer in client.customers.list(page_size=10, prefetch=3):
        if customer.account == "C3":
            break
    await settle()
    assert pending_tasks() <= before
    requested = sandbox.count("list")
    await asyncio.sleep(0.1)
    assert sandbox.count("list") == requested  # nothing more goes out


async def test_an_error_in_the_loop_body_cancels_prefetches(
    slow: tuple[SandboxServer, Client],
) -> None:
    _, client = slow
    before = pending_tasks()

    async def consume() -> None:
        listing = client.customers.list(page_size=10, prefetch=3)
        async with contextlib.aclosing(listing.pages()) as pages:
            async for _ in pages:
                _ = 1 / 0

    with pytest.raises(ZeroDivisionError):
        await consume()
    assert pending_tasks() <= before


async def test_cancelling_a_walk_leaves_nothing_behind(slow: tuple[SandboxServer, Client]) -> None:
    sandbox, client = slow
    before = pending_tasks()
    walk = asyncio.ensure_future(client.customers.list(page_size=10, prefetch=2).collect())
    await wait_until(lambda: sandbox.count("list") >= 2)  # a page out, and one ahead
    walk.cancel()
    with pytest.raises(asyncio.CancelledError):
        await walk
    await settle()
    assert pending_tasks() <= before


@pytest.mark.parametrize(
    ("paging", "expected_pages"),
    [
        ("meta", [1, 2, 3, 4, 5]),  # the totals, counted at the 50 really served
        ("total_records", [1, 2, 3, 4, 5]),  # the record count alone
        ("plain", [1, 2, 3, 4, 5, 6]),  # nothing: an empty page ends it
    ],
)
async def test_a_silent_page_cap_never_ends_a_listing_early(
    make_sandbox: SandboxFactory, make_client: ClientFactory, paging: str, expected_pages: list[int]
) -> None:
    sandbox = await make_sandbox(paging=paging, max_page_size=50)
    seed(sandbox, 250)
    client = make_client(sandbox)
    items = await client.customers.list().collect()
    assert [c.account for c in items] == [f"C{n}" for n in range(250)]
    assert pages_requested(sandbox) == expected_pages
    limits = [r.params["limit"] for r in sandbox.requests if r.action == "list"]
    assert limits == ["100"] + ["50"] * (len(expected_pages) - 1)  # page 1 showed the cap
    # The cap is remembered: the next walk asks for what the server serves, and a
    # limit is met exactly.
    sandbox.requests.clear()
    assert len(await client.customers.list(limit=120).collect()) == 120
    assert [r.params["limit"] for r in sandbox.requests] == ["50", "50", "50"]


async def test_a_short_page_without_totals_is_followed_by_one_more_request(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await make_sandbox(paging="plain")
    seed(sandbox, 30)
    client = make_client(sandbox)
    assert len(await client.customers.list().collect()) == 30
    assert pages_requested(sandbox) == [1, 2]  # 30 of 100 asked for proves nothing alone
    assert sandbox.requests[1].status == 200


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_concurrent_pages_follow_the_page_size_really_served(
    make_sandbox: SandboxFactory, make_client: ClientFactory, concurrency: int
) -> None:
    sandbox = await make_sandbox(max_page_size=20)
    seed(sandbox, 130)
    client = make_client(sandbox)
    items = await client.customers.list(concurrency=concurrency, prefetch=2).collect()
    assert [c.account for c in items] == [f"C{n}" for n in range(130)]
    assert sorted(pages_requested(sandbox)) == list(range(1, 8))


def listing_server(rows: int, per_page: int, *, total: int | None = None) -> MockTransport:
    """A server that serves ``per_page`` records a page whatever was asked for, and
    reports ``total`` records (its count may include rows no page shows)."""

    def handler(request: Request) -> RawResponse:
        params = dict(request.params)
        page = int(params.get("page", "1"))
        start = (page - 1) * per_page
        data = [
            {"id": n + 1, "account": f"C{n}"} for n in range(start, min(rows, start + per_page))
        ]
        body: dict[str, object] = {"success": True, "data": data}
        if total is not None:
            body["meta"] = {"total_records": total}
        return json_response(body)

    return MockTransport(handler)


async def test_a_count_that_includes_rows_no_page_shows_teaches_no_page_size() -> None:
    server = listing_server(7, per_page=100, total=10)  # 7 real rows, 3 soft-deleted
    async with Client(
        base_url="https://crm.example.com", api_key="k", transport=server, limiter=LocalLimiter()
    ) as client:
        assert len(await client.customers.list().collect()) == 7
        server.requests.clear()
        await client.customers.list().collect()
    assert dict(server.requests[0].params)["limit"] == "100"  # nothing learned


async def test_a_first_page_larger_than_asked_counts_the_pages_with_its_size() -> None:
    server = listing_server(400, per_page=200, total=400)  # ignores limit: 200 a page
    async with Client(
        base_url="https://crm.example.com", api_key="k", transport=server, limiter=LocalLimiter()
    ) as client:
        items = await client.customers.list(concurrency=4).collect()
    assert len(items) == 400
    assert sorted(int(dict(r.params)["page"]) for r in server.requests) == [1, 2]
