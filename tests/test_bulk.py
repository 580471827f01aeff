"""Bulk jobs against the sandbox: outcomes, batching, faults, journals, crashes, progress."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import attrs
import pytest

from cloudonex_async import (
    BulkError,
    BulkProgress,
    Client,
    ConfigurationError,
    Customer,
    LocalLimiter,
    OutcomeUnknownError,
    RateLimitStatus,
    RetryPolicy,
    ValidationError,
)
from cloudonex_async._bulk import estimate_eta
from cloudonex_async.testing import Faults, SandboxServer

from .conftest import ClientFactory, SandboxFactory, wait_until

ROOT = Path(__file__).resolve().parent.parent


def people(count: int, start: int = 0) -> Iterator[dict[str, str]]:
    for n in range(start, start + count):
        yield {"account": f"Person {n}", "email": f"person{n}@example.com"}


def emails(sandbox: SandboxServer) -> Counter[str]:
    return Counter(str(r["email"]) for r in sandbox.records("customers"))


def by_email(client: Client):  # type: ignore[no-untyped-def]
    async def reconcile(record: dict[str, str]) -> Customer | None:
        found = await client.customers.list(search=record["email"]).collect()
        return next((c for c in found if c.email == record["email"]), None)

    return reconcile


@pytest.mark.parametrize("batch_size", [None, 25])
async def test_every_record_gets_one_outcome_and_is_created_once_despite_faults(
    make_sandbox: SandboxFactory, make_client: ClientFactory, batch_size: int | None
) -> None:
    sandbox = await make_sandbox(faults=Faults(error_rate=0.1, drop_rate=0.05, seed=11))
    client = make_client(sandbox, retry=RetryPolicy(attempts=6, backoff_base=0.001))
    result = await client.customers.bulk_create(
        people(300), key=lambda r: r["email"], batch_size=batch_size, concurrency=8
    )
    assert [o.index for o in result.outcomes] == list(range(300))
    assert result.unknown  # the faults did strike, and were not hidden
    assert all(isinstance(o.error, OutcomeUnknownError) for o in result.unknown)
    stored = emails(sandbox)
    assert max(stored.values()) == 1  # nothing created twice
    for outcome in result.succeeded:
        assert outcome.model is not None
        assert outcome.key == outcome.model.email
        assert stored[outcome.key or ""] == 1
    assert len(result.succeeded) <= len(stored) <= 300


async def test_reconcile_resolves_unknowns_and_completes_the_job(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await make_sandbox(faults=Faults(error_rate=0.1, drop_rate=0.05, seed=5))
    client = make_client(sandbox, retry=RetryPolicy(attempts=8, backoff_base=0.001))
    result = await client.customers.bulk_create(
        people(200), batch_size=20, reconcile=by_email(client)
    )
    stored = emails(sandbox)
    assert max(stored.values()) == 1
    assert len(result.outcomes) == 200
    assert len(result.succeeded) >= 190  # the rest met faults twice
    assert sum(stored.values()) >= len(result.succeeded)


async def test_batches_cut_requests_and_report_field_errors(
    sandbox: SandboxServer, make_client: ClientFactory
) -> None:
    client = make_client(sandbox)
    records = list(people(250))
    records[7]["email"] = "not-an-email"
    result = await client.customers.bulk_create(records, batch_size=100)
    assert sandbox.count("batch") == 3
    assert sandbox.count("create") == 0
    [failed] = result.failed
    assert failed.index == 7
    assert isinstance(failed.error, ValidationError)
    assert failed.error.errors == {"email": "Invalid email format"}
    assert len(result.succeeded) == 249
    assert all(o.record_id is not None for o in result.succeeded)
    with pytest.raises(BulkError) as error:
        await client.customers.bulk_create([{"account": ""}], raise_on_error=True)
    assert "1 failed" in str(error.value)
    assert len(error.value.result.failed) == 1


async def test_a_server_without_the_batch_path_is_remembered(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await make_sandbox(batch=False)
    client = make_client(sandbox)
    first = await client.customers.bulk_create(people(30), batch_size=10)
    second = await client.customers.bulk_create(people(30, start=30), batch_size=10)
    assert len(first.succeeded) == len(second.succeeded) == 30
    assert sandbox.count("batch") == 1  # tried once, then one request per record
    assert sandbox.count("create") == 60


async def test_an_unreadable_batch_answer_leaves_records_unknown_not_resent(
    sandbox: SandboxServer, make_client: ClientFactory
) -> None:
    client = make_client(sandbox)
    sandbox.inject("malformed", after_processing=True)
    result = await client.customers.bulk_create(people(10), batch_size=10)
    assert [o.status for o in result.outcomes] == ["unknown"] * 10
    assert sandbox.count("batch") == 1
    assert sandbox.count("create") == 0
    assert sum(emails(sandbox).values()) == 10  # they were in fact created, once


async def test_outcomes_stream_while_input_is_consumed_lazily(
    sandbox: SandboxServer, make_client: ClientFactory
) -> None:
    client = make_client(sandbox)
    pulled = 0

    async def source() -> AsyncIterator[dict[str, str]]:
        nonlocal pulled
        for record in people(300):
            pulled += 1
            yield record

    first_seen_after = None
    count = 0
    async for outcome in client.customers.bulk_create_iter(
        source(), batch_size=None, concurrency=2
    ):
        assert outcome.status == "created"
        count += 1
        if first_seen_after is None:
            first_seen_after = pulled
            await asyncio.sleep(0.05)  # a slow consumer: the job does not race ahead
            assert pulled < 20
    assert count == 300
    assert first_seen_after is not None
    assert first_seen_after < 20


async def test_update_and_delete_report_per_record(
    sandbox: SandboxServer, make_client: ClientFactory
) -> None:
    client = make_client(sandbox)
    created = await client.customers.bulk_create(people(20), batch_size=None)
    ids = [o.record_id or 0 for o in created.outcomes]
    changes = [(rid, {"phone": f"555-{n}"}) for n, rid in enumerate(ids)]
    changes.append((999, {"phone": "x"}))
    updated = await client.customers.bulk_update(changes)
    assert [o.status for o in updated.outcomes] == ["updated"] * 20 + ["failed"]
    assert sandbox.store["customers"][ids[3]]["phone"] == "555-3"
    models = [o.model for o in updated.outcomes[:2] if o.model is not None]
    again = await client.customers.bulk_update(models)
    assert len(again.succeeded) == 2
    deleted = await client.customers.bulk_delete([*ids[:10], ids[0]])
    assert [o.status for o in deleted.outcomes] == ["deleted"] * 11  # gone already counts
    assert len(sandbox.records("customers")) == 10


async def test_progress_reports_counts_and_an_eta(
    sandbox: SandboxServer, make_client: ClientFactory
) -> None:
    client = make_client(sandbox)
    seen: list[BulkProgress] = []
    await client.customers.bulk_create(list(people(40)), batch_size=None, on_progress=seen.append)
    assert [p.done for p in seen] == list(range(1, 41))
    assert seen[-1].succeeded == 40
    assert seen[-1].total == 40
    etas = [p.eta_seconds for p in seen]
    assert all(eta is not None for eta in etas)
    assert seen[-1].eta_seconds == 0
    assert etas[0] is not None
    assert etas[0] > 0  # 39 records to go: not done yet
    assert etas[0] >= max(e for e in etas[len(etas) // 2 :] if e is not None)
    assert seen[-1].budget_remaining is not None
    assert seen[-1].budget_remaining < seen[0].budget_remaining  # type: ignore[operator]


def test_eta_follows_the_budget_not_the_request_rate() -> None:
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    status = RateLimitStatus(
        limit=1000, remaining=1000, reset_at=now + timedelta(hours=1), window_seconds=3600
    )
    eta = estimate_eta(5000, status, now=now.timestamp(), rate=50.0)
    assert 4 * 3600 <= eta <= 5 * 3600  # about five hours, not 5000 / 50 = 100 s
    eta = estimate_eta(500, status, now=now.timestamp(), rate=50.0)
    assert eta == pytest.approx(10.0)
    reserved = attrs.evolve(status, reserve=100)
    eta = estimate_eta(950, reserved, now=now.timestamp(), rate=50.0)
    assert eta >= 3600  # the reserve is not the job's to spend: the last 50 wait for Reset
    short = attrs.evolve(
        status, limit=50, remaining=0, reset_at=now + timedelta(seconds=2), window_seconds=5
    )
    eta = estimate_eta(250, short, now=now.timestamp(), rate=None)
    assert eta == pytest.approx(2 + 4 * 5)  # the server's 5 s windows, not the hour


async def test_a_journal_makes_a_rerun_skip_what_was_done(
    sandbox: SandboxServer, make_client: ClientFactory, tmp_path: Path
) -> None:
    client = make_client(sandbox)
    journal = str(tmp_path / "job.journal")
    records = list(people(30))
    records[4]["email"] = "bad"
    first = await client.customers.bulk_create(records, batch_size=None, journal=journal)
    assert len(first.succeeded) == 29
    requests = sandbox.count()
    again = await client.customers.bulk_create(records, batch_size=None, journal=journal)
    assert sandbox.count() == requests  # nothing sent
    assert all(o.resumed for o in again.outcomes)
    assert [o.status for o in again.outcomes] == [o.status for o in first.outcomes]
    assert [o.record_id for o in again.outcomes] == [o.record_id for o in first.outcomes]
    assert again.outcomes[4].error is not None
    assert isinstance(again.outcomes[4].error, ValidationError)  # its field errors were kept
    assert again.outcomes[4].error.errors == {"email": "Invalid email format"}
    retried = await client.customers.bulk_create(
        records, batch_size=None, journal=journal, retry_failed=True
    )
    assert sandbox.count() == requests + 1  # only the failed one went again
    assert retried.outcomes[4].status == "failed"
    records[0]["account"] = "Changed"
    with pytest.raises(ConfigurationError, match="has changed since an earlier run"):
        await client.customers.bulk_create(records, batch_size=None, journal=journal)


async def test_cancelling_a_job_lets_requests_in_flight_finish_and_journals_them(
    make_sandbox: SandboxFactory, make_client: ClientFactory, tmp_path: Path
) -> None:
    sandbox = await make_sandbox(latency=0.05)
    client = make_client(sandbox)
    journal = tmp_path / "job.journal"
    job = asyncio.ensure_future(
        client.customers.bulk_create(
            people(200), batch_size=None, concurrency=4, journal=str(journal)
        )
    )
    await wait_until(lambda: sandbox.count("create") >= 10)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    states: dict[int, str] = {}
    for line in journal.read_text().splitlines()[1:]:
        entry = json.loads(line)
        states[entry["i"]] = entry["s"]
    assert "sent" not in states.values()  # every request that left has its outcome
    assert (
        Counter(states.values())["created"]
        == sandbox.count("create")
        == len(sandbox.records("customers"))
    )
    rerun = await client.customers.bulk_create(
        people(200), batch_size=None, journal=str(journal), reconcile=by_email(client)
    )
    assert len(rerun.succeeded) == 200
    assert emails(sandbox) == Counter(f"person{n}@example.com" for n in range(200))


@pytest.mark.slow
async def test_a_killed_job_rerun_with_reconcile_creates_every_record_exactly_once(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = await make_sandbox(latency=0.03)
    journal = str(tmp_path / "crash.journal")
    args = ["-m", "tests.bulk_worker", sandbox.base_url, sandbox.api_key, journal, "150"]
    first = await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    await wait_until(lambda: sandbox.count("create") >= 40, timeout=30)
    first.send_signal(signal.SIGKILL)
    await first.wait()
    assert first.returncode == -signal.SIGKILL
    assert len(sandbox.records("customers")) < 150  # it really died part-way
    second = await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await second.communicate()
    assert second.returncode == 0
    assert "150 succeeded" in out.decode()
    assert emails(sandbox) == Counter(f"person{n}@example.com" for n in range(150))


async def test_bulk_work_leaves_the_reserve_to_interactive_calls(
    make_sandbox: SandboxFactory,
) -> None:
    sandbox = await make_sandbox(rate_limit=30, rate_period=3600)
    async with Client(
        base_url=sandbox.base_url,
        api_key=sandbox.api_key,
        limiter=LocalLimiter(rate_limit=30, bulk_reserve=0.2),
    ) as client:
        job = asyncio.ensure_future(client.customers.bulk_create(people(100), batch_size=None))
        await wait_until(
            lambda: len(sandbox.records("customers")) == 24 and client.rate_limit.waits > 0
        )
        page = await client.request("GET", "customers", params={"limit": 100}, max_wait=0)
        assert isinstance(page, list)
        assert len(page) == 24
        job.cancel()
        await asyncio.gather(job, return_exceptions=True)


async def test_lost_batches_are_looked_up_concurrently_and_resent_in_batches(
    sandbox: SandboxServer, make_client: ClientFactory
) -> None:
    client = make_client(sandbox)
    sandbox.inject("drop")  # the first batch is lost before the server stores it
    lookups, busy, widest = 0, 0, 0

    async def reconcile(record: dict[str, str]) -> Customer | None:
        nonlocal lookups, busy, widest
        lookups, busy = lookups + 1, busy + 1
        widest = max(widest, busy)
        await asyncio.sleep(0.005)
        busy -= 1
        found = await client.customers.list(email=record["email"]).collect()
        return found[0] if found else None

    result = await client.customers.bulk_create(
        people(50), batch_size=25, concurrency=4, reconcile=reconcile
    )
    assert len(result.succeeded) == 50
    assert lookups == 25
    assert widest > 1
    assert sandbox.count("batch") == 3  # two batches, and the lost one's records once more
    assert emails(sandbox) == Counter(f"person{n}@example.com" for n in range(50))


async def test_progress_of_a_generator_knows_its_total_when_told(
    sandbox: SandboxServer, make_client: ClientFactory
) -> None:
    client = make_client(sandbox)
    untold: list[BulkProgress] = []
    told: list[BulkProgress] = []
    await client.customers.bulk_create(people(5), on_progress=untold.append)
    await client.customers.bulk_create(people(5, 5), on_progress=told.append, total=5)
    assert untold[-1].total is None
    assert untold[-1].eta_seconds is None
    assert told[-1].total == 5
    assert told[-1].eta_seconds == 0
