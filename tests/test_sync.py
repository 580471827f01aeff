"""Sync against the sandbox: request cost, exactness, faults, crashes, deletes, dialects."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Literal

import pytest

from cloudonex_async import (
    BulkProgress,
    Client,
    ConfigurationError,
    Customer,
    LocalLimiter,
    Product,
    RedisJournal,
    RetryPolicy,
    ServerError,
    SyncError,
    SyncPlan,
    UnsupportedError,
)
from cloudonex_async.testing import Faults, SandboxServer

from .conftest import ClientFactory, SandboxFactory, wait_until
from .sync_worker import wanted

ROOT = Path(__file__).resolve().parent.parent


def people(count: int, start: int = 0, phone: str = "v1") -> list[dict[str, str]]:
    return [
        {"account": f"Person {n}", "email": f"person{n}@example.com", "phone": phone}
        for n in range(start, start + count)
    ]


def stored(sandbox: SandboxServer) -> dict[str, dict[str, object]]:
    """The sandbox's customers by email (the test fails if an email is stored twice)."""
    rows = sandbox.records("customers")
    counts = Counter(str(r["email"]) for r in rows)
    assert max(counts.values(), default=1) == 1, "an email is stored twice"
    return {str(r["email"]): r for r in rows}


def matches(sandbox: SandboxServer, records: list[dict[str, str]]) -> list[str]:
    """The emails of input records the sandbox does not hold exactly as given."""
    held = stored(sandbox)
    return [
        r["email"]
        for r in records
        if any(str(held.get(r["email"], {}).get(k)) != v for k, v in r.items())
    ]


async def seeded(make_sandbox: SandboxFactory, count: int, **options: object) -> SandboxServer:
    sandbox = await make_sandbox(max_page_size=100, **options)
    sandbox.seed("customers", people(count))
    return sandbox


def nightly(count: int, changed: int, new: int) -> list[dict[str, str]]:
    """``count`` known customers, the first ``changed`` with a new phone, plus ``new``."""
    records = people(count)
    for record in records[:changed]:
        record["phone"] = "v2"
    return records + people(new, start=count)


async def test_a_nightly_sync_costs_a_scan_plus_the_changes_and_leaves_the_input(
    make_sandbox: SandboxFactory,
) -> None:
    sandbox = await seeded(make_sandbox, 2000)
    records = nightly(2000, changed=100, new=50)
    async with Client(base_url=sandbox.base_url, api_key=sandbox.api_key) as client:  # defaults
        plan = await client.customers.sync(records, key="email", dry_run=True)
        assert isinstance(plan, SyncPlan)
        assert (plan.creates, plan.updates, plan.unchanged) == (50, 100, 1900)
        assert sandbox.count("list") == len(sandbox.requests) == plan.requests_spent == 20
        assert len(sandbox.records("customers")) == 2000  # a dry run writes nothing
        assert matches(sandbox, records[100:2000]) == []

        before = len(sandbox.requests)
        result = await client.customers.sync(records, key="email")
    spent = len(sandbox.requests) - before
    assert spent <= 130
    assert abs(plan.requests - spent) <= 0.1 * spent
    assert result.requests == spent
    assert (result.count("created"), result.count("updated"), result.count("unchanged")) == (
        50,
        100,
        1900,
    )
    assert [o.index for o in result.outcomes] == list(range(2050))
    assert matches(sandbox, records) == []
    assert len(stored(sandbox)) == 2050
    updated = result.outcomes[0]
    assert updated.status == "updated"
    assert dict(updated.changes) == {"phone": "v2"}


async def test_a_few_records_are_looked_up_instead_of_scanning(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await seeded(make_sandbox, 2000)
    client = make_client(sandbox)
    records = people(2, start=1500) + people(2, start=1700, phone="v2") + people(1, start=5000)
    before = len(sandbox.requests)
    result = await client.customers.sync(records, key="email")
    assert len(sandbox.requests) - before <= 12
    assert result.strategy == "lookup"
    assert [o.status for o in result.outcomes] == [
        "unchanged",
        "unchanged",
        "updated",
        "updated",
        "created",
    ]
    assert matches(sandbox, records) == []
    assert len(stored(sandbox)) == 2001


async def test_strategy_can_be_forced_and_both_agree(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await seeded(make_sandbox, 150)
    client = make_client(sandbox)
    records = nightly(150, changed=3, new=2)
    lookup = await client.customers.sync(records, key="email", strategy="lookup", dry_run=True)
    scan = await client.customers.sync(records, key="email", strategy="scan", dry_run=True)
    assert (lookup.strategy, scan.strategy) == ("lookup", "scan")
    assert (lookup.creates, lookup.updates) == (scan.creates, scan.updates) == (2, 3)
    assert scan.requests < lookup.requests


async def test_faults_leave_one_outcome_per_record_and_no_key_twice(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await seeded(make_sandbox, 300, faults=Faults(error_rate=0.1, drop_rate=0.05, seed=7))
    client = make_client(sandbox)
    records = nightly(300, changed=60, new=120)
    result = await client.customers.sync(records, key="email", batch_size=20)
    assert [o.index for o in result.outcomes] == list(range(len(records)))
    assert sandbox.count() > 0
    assert any(r.fault for r in sandbox.requests)
    good = [records[o.index] for o in result.outcomes if o.ok]
    assert matches(sandbox, good) == []  # stored() inside also checks no key is held twice
    assert len(good) >= len(records) - 10
    # A second run finishes what the faults left, and touches nothing else.
    again = await client.customers.sync(records, key="email", batch_size=20)
    assert all(o.status == "unchanged" for o in again.outcomes if result.outcomes[o.index].ok)
    assert matches(sandbox, [records[o.index] for o in again.outcomes if o.ok]) == []


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["file", "redis"])
async def test_a_killed_sync_rerun_with_its_journal_ends_exact(
    make_sandbox: SandboxFactory, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    where = str(tmp_path / "sync.journal")
    if backend == "redis":
        where = request.getfixturevalue("redis_url")
        from redis.asyncio import Redis

        redis = Redis.from_url(where)
        await redis.delete("cloudonex_async:journal:crash-test")
        await redis.aclose()
    sandbox = await seeded(make_sandbox, 100, latency=0.03)
    args = ["-m", "tests.sync_worker", sandbox.base_url, sandbox.api_key, backend, where, "250"]
    first = await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    await wait_until(lambda: len(sandbox.records("customers")) >= 140, timeout=30)
    first.send_signal(signal.SIGKILL)
    await first.wait()
    assert first.returncode == -signal.SIGKILL
    assert len(sandbox.records("customers")) < 250  # it really died part-way
    second = await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await second.communicate()
    assert second.returncode == 0, out
    assert "0 failed, 0 unknown" in out.decode()
    assert matches(sandbox, wanted(250)) == []
    assert len(stored(sandbox)) == 250


async def test_a_journal_lets_a_rerun_skip_what_is_settled(
    make_sandbox: SandboxFactory, make_client: ClientFactory, tmp_path: Path
) -> None:
    sandbox = await seeded(make_sandbox, 50)
    client = make_client(sandbox)
    records = nightly(50, changed=5, new=5)
    journal = tmp_path / "nightly.journal"
    first = await client.customers.sync(records, key="email", journal=journal)
    assert first.count("created") == 5
    assert first.count("updated") == 5
    writes = len(sandbox.requests) - sandbox.count("list")
    second = await client.customers.sync(records, key="email", journal=journal)
    assert len(sandbox.requests) - sandbox.count("list") == writes  # nothing written again
    assert sum(o.resumed for o in second.outcomes) == 10
    assert matches(sandbox, records) == []


async def test_delete_missing_deletes_exactly_the_missing_and_stops_at_max_deletes(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await seeded(make_sandbox, 30)
    client = make_client(sandbox)
    keep = people(20)
    with pytest.raises(ConfigurationError, match="max_deletes"):
        await client.customers.sync(keep, key="email", delete_missing=True)
    plan = await client.customers.sync(
        keep, key="email", delete_missing=True, max_deletes=4, dry_run=True
    )
    assert plan.deletes == 10
    assert len(stored(sandbox)) == 30
    first = await client.customers.sync(keep, key="email", delete_missing=True, max_deletes=4)
    statuses = Counter(d.status for d in first.deletions)
    assert statuses == {"deleted": 4, "skipped": 6}
    assert sandbox.count("delete") == 4
    assert len(stored(sandbox)) == 26
    second = await client.customers.sync(keep, key="email", delete_missing=True, max_deletes=10)
    assert Counter(d.status for d in second.deletions) == {"deleted": 6}
    assert set(stored(sandbox)) == {r["email"] for r in keep}
    gone = {d.key for d in first.deletions + second.deletions if d.status == "deleted"}
    assert gone == {f"person{n}@example.com" for n in range(20, 30)}


async def test_keys_compare_normalized_and_values_as_the_model_holds_them(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await make_sandbox()
    sandbox.seed("products", [{"name": "Widget", "price": "100.00", "description": "A"}])
    sandbox.seed("customers", [{"account": "Jane", "email": "jane@example.com"}])
    client = make_client(sandbox)
    products = await client.products.sync(
        [{"name": " WIDGET ", "price": 100, "description": "A"}], key="name"
    )
    assert products.outcomes[0].status == "unchanged"  # "100.00" is 100; names fold
    model = Product(name="widget", price=Decimal("100.0"), description="B")
    changed = await client.products.sync([model], key="name")
    assert changed.outcomes[0].status == "updated"
    assert dict(changed.outcomes[0].changes) == {"description": "B"}  # only what differs
    assert sandbox.records("products")[0]["name"] == "Widget"  # the key is not rewritten
    by_function = await client.customers.sync(
        [{"mail": "JANE@example.com", "account": "Jane"}],
        key=lambda r: r["mail"],
        remote_key="email",
        fields=["account"],
    )
    assert by_function.outcomes[0].status == "unchanged"
    with pytest.raises(ConfigurationError, match="remote_key"):
        await client.customers.sync([{"email": "x@example.com"}], key=lambda r: r["email"])


async def test_ambiguous_keys_fail_for_that_key_and_are_never_guessed(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await make_sandbox()
    sandbox.seed("customers", [{"account": "A", "email": "twin@example.com"}] * 2)
    client = make_client(sandbox)
    records = [
        {"account": "B", "email": "twin@example.com"},
        {"account": "C", "email": "dup@example.com"},
        {"account": "D", "email": "DUP@example.com"},
        {"account": "E"},
        {"account": "F", "email": "fine@example.com"},
    ]
    result = await client.customers.sync(records, key="email")
    assert [o.status for o in result.outcomes] == ["failed"] * 4 + ["created"]
    assert "several remote records" in str(result.outcomes[0].error)
    assert "also the key of the input record at index 2" in str(result.outcomes[1].error)
    assert result.outcomes[1].same_key == (2,)
    assert "no key" in str(result.outcomes[3].error)
    assert len(sandbox.records("customers")) == 3
    with pytest.raises(SyncError) as raised:
        await client.customers.sync(records, key="email", raise_on_error=True)
    assert raised.value.result.count("failed") == 4


async def test_progress_is_reported_to_the_end(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await seeded(make_sandbox, 40)
    client = make_client(sandbox)
    seen: list[BulkProgress] = []
    await client.customers.sync(
        nightly(40, changed=10, new=10), key="email", on_progress=seen.append
    )
    assert seen[-1].done == seen[-1].total == 50
    assert seen[-1].succeeded == 50
    assert [p.done for p in seen] == sorted(p.done for p in seen)


async def test_a_shipped_server_is_scanned_in_one_request_and_refuses_updates_per_record(
    make_sandbox: SandboxFactory,
) -> None:
    sandbox = await make_sandbox(style="shipped")
    sandbox.seed("customers", people(30))
    async with Client(
        base_url=sandbox.base_url,
        api_key=sandbox.api_key,
        profile="shipped",
        limiter=LocalLimiter(),
    ) as client:
        records = nightly(30, changed=2, new=3)
        plan = await client.customers.sync(records, key="email", dry_run=True)
        result = await client.customers.sync(records, key="email")
    assert plan.requests == result.requests  # creates go one by one there: no batch path
    assert sandbox.count("list") == 2  # one request per scan: the dry run's and the run's
    assert Counter(o.status for o in result.outcomes) == {
        "unchanged": 28,
        "failed": 2,
        "created": 3,
    }
    assert all(isinstance(o.error, UnsupportedError) for o in result.failed)
    emails = Counter(str(r["email"]) for r in sandbox.records("customers"))
    assert len(emails) == 33
    assert max(emails.values()) == 1


async def test_sync_takes_models_and_async_iterables(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await seeded(make_sandbox, 5)
    client = make_client(sandbox)

    async def source() -> AsyncIterator[Customer | dict[str, str]]:
        yield Customer(account="Person 0", email="person0@example.com", phone="v9")
        yield {"account": "New", "email": "new@example.com"}

    result = await client.customers.sync(source(), key="email")
    assert [o.status for o in result.outcomes] == ["updated", "created"]


@pytest.mark.parametrize("paging", ["plain", "total_records", "meta"])
@pytest.mark.parametrize("strategy", ["auto", "scan", "lookup"])
async def test_a_silent_page_cap_never_makes_a_sync_create_a_second_copy(
    make_sandbox: SandboxFactory,
    make_client: ClientFactory,
    paging: str,
    strategy: Literal["auto", "scan", "lookup"],
) -> None:
    sandbox = await make_sandbox(paging=paging, max_page_size=50)
    sandbox.seed("customers", people(250))
    client = make_client(sandbox)
    changed = {**people(1, start=200)[0], "phone": "v2"}
    result = await client.customers.sync([changed], key="email", strategy=strategy)
    assert [o.status for o in result.outcomes] == ["updated"]
    assert len(stored(sandbox)) == 250  # no second copy
    assert stored(sandbox)["person200@example.com"]["phone"] == "v2"
    plan = await client.customers.sync(people(250), key="email", dry_run=True)
    assert (plan.creates, plan.updates, plan.unchanged) == (0, 1, 249)


@pytest.mark.redis
@pytest.mark.parametrize("decode", [False, True], ids=["bytes", "decode_responses"])
async def test_a_redis_journal_resumes_whether_the_client_decodes_responses_or_not(
    make_sandbox: SandboxFactory, make_client: ClientFactory, redis_url: str, decode: bool
) -> None:
    from redis.asyncio import Redis

    sandbox = await seeded(make_sandbox, 20)
    client = make_client(sandbox)
    redis = Redis.from_url(redis_url, decode_responses=decode)
    try:
        name = f"decode-{decode}"
        await redis.delete(f"cloudonex_async:journal:{name}")
        records = nightly(20, changed=3, new=4)
        first = await client.customers.sync(records, key="email", journal=RedisJournal(redis, name))
        assert first.count("created") == 4
        writes = len(sandbox.requests) - sandbox.count("list")
        again = await client.customers.sync(records, key="email", journal=RedisJournal(redis, name))
        assert sum(o.resumed for o in again.outcomes) == 7  # settled before: skipped
        assert len(sandbox.requests) - sandbox.count("list") == writes
        bulk = RedisJournal(redis, f"bulk-{name}")
        await redis.delete(bulk.key)
        await client.customers.bulk_create(people(5, start=100), journal=bulk)
        rerun = await client.customers.bulk_create(people(5, start=100), journal=bulk)
        assert all(o.resumed for o in rerun.outcomes)
    finally:
        await redis.aclose()


async def test_a_failed_lookup_raises_the_error_itself(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await seeded(make_sandbox, 20)
    client = make_client(sandbox, retry=RetryPolicy(attempts=1))
    sandbox.inject("error", status=503, count=50)
    with pytest.raises(ServerError):  # not an ExceptionGroup: what callers catch
        await client.customers.sync(people(3), key="email", strategy="lookup")


async def test_a_plan_counts_what_an_earlier_run_settled_and_bad_records_keep_their_key(
    make_sandbox: SandboxFactory, make_client: ClientFactory, tmp_path: Path
) -> None:
    sandbox = await seeded(make_sandbox, 10)
    client = make_client(sandbox)
    records = nightly(10, changed=2, new=3)
    journal = tmp_path / "nightly.journal"
    await client.customers.sync(records, key="email", journal=journal)
    plan = await client.customers.sync(records, key="email", journal=journal, dry_run=True)
    assert (plan.creates, plan.updates, plan.unchanged, plan.settled) == (0, 0, 8, 5)
    assert "5 settled by an earlier run" in plan.summary()
    bad: list[object] = [{"account": True, "email": "odd@example.com"}]
    result = await client.customers.sync(bad, key="email")  # type: ignore[arg-type]
    assert result.outcomes[0].key == "odd@example.com"


async def test_a_deletion_whose_answer_was_lost_is_unknown_not_failed(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await seeded(make_sandbox, 3)
    client = make_client(sandbox, retry=RetryPolicy(attempts=1))
    # The delete is processed, then the answer is a 500: maybe gone, maybe not.
    sandbox.inject("error", status=500, after_processing=True, method="DELETE")
    result = await client.customers.sync(people(2), key="email", delete_missing=True, max_deletes=5)
    [deletion] = result.deletions
    assert deletion.status == "unknown"
    assert len(sandbox.records("customers")) == 2  # it was in fact deleted
