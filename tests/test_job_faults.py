"""Bulk jobs and syncs when the caller's side fails: a raising hook, a failing journal,
a bad record in the input, a cancel. A job ends promptly with the error, leaves no
task behind, and never loses or duplicates a record."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from cloudonex_async import (
    BulkProgress,
    Client,
    Customer,
    Event,
    FileJournal,
    InputChangedError,
    JournalEntry,
    ValidationError,
)
from cloudonex_async.testing import SandboxServer

from .conftest import ClientFactory, SandboxFactory, library_tasks, wait_until

# A hang is a failure: each job must be over well within this.
BOUND = 10.0


def people(count: int, start: int = 0) -> Iterator[dict[str, str]]:
    for n in range(start, start + count):
        yield {"account": f"Person {n}", "email": f"person{n}@example.com"}


def emails(sandbox: SandboxServer) -> Counter[str]:
    return Counter(str(r["email"]) for r in sandbox.records("customers"))


def journal_states(path: Path) -> dict[int, str]:
    states: dict[int, str] = {}
    for line in path.read_text().splitlines()[1:]:
        entry = json.loads(line)
        states[entry["i"]] = entry["s"]
    return states


def by_email(client: Client):  # type: ignore[no-untyped-def]
    async def reconcile(record: dict[str, str]) -> Customer | None:
        found = await client.customers.list(email=record["email"]).collect()
        return found[0] if len(found) == 1 else None

    return reconcile


class Broken(Exception):
    """A bug in the caller's code."""


@pytest.mark.parametrize("batch", [True, False], ids=["batch", "no-batch"])
async def test_a_raising_progress_hook_ends_the_job_with_its_error_and_nothing_lost(
    make_sandbox: SandboxFactory, make_client: ClientFactory, tmp_path: Path, batch: bool
) -> None:
    sandbox = await make_sandbox(batch=batch, latency=0.002)
    client = make_client(sandbox)
    journal = tmp_path / "job.journal"
    calls = 0

    def hook(progress: BulkProgress) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise Broken("the hook has a bug")

    with pytest.raises(Broken, match="the hook has a bug"):
        await asyncio.wait_for(
            client.customers.bulk_create(
                people(200), batch_size=20, on_progress=hook, journal=str(journal)
            ),
            BOUND,
        )
    assert library_tasks() == []
    # Whatever reached the server is in the journal, as sent or as created.
    states = journal_states(journal)
    journaled = {f"person{i}@example.com" for i, s in states.items() if s in ("sent", "created")}
    assert set(emails(sandbox)) <= journaled
    rerun = await asyncio.wait_for(
        client.customers.bulk_create(
            people(200), batch_size=20, journal=str(journal), reconcile=by_email(client)
        ),
        BOUND,
    )
    assert len(rerun.succeeded) == 200
    assert emails(sandbox) == Counter(f"person{n}@example.com" for n in range(200))


class FailingJournal(FileJournal):
    """A journal whose disk fills up after ``good`` writes."""

    def __init__(self, path: Path, good: int) -> None:
        super().__init__(path)
        self.good = good

    async def write(self, entries: list[JournalEntry]) -> None:
        if self.good <= 0:
            raise OSError(28, "No space left on device")
        self.good -= 1
        await super().write(entries)


@pytest.mark.parametrize("good", [0, 1, 7])
async def test_a_failing_journal_ends_the_job_with_its_error(
    make_sandbox: SandboxFactory, make_client: ClientFactory, tmp_path: Path, good: int
) -> None:
    sandbox = await make_sandbox(batch=False)
    client = make_client(sandbox)
    journal = FailingJournal(tmp_path / "job.journal", good)
    with pytest.raises(OSError, match="No space left"):
        await asyncio.wait_for(
            client.customers.bulk_create(people(200), journal=journal, concurrency=4), BOUND
        )
    assert library_tasks() == []
    # Nothing went out that the journal did not record first ("sent" is written before).
    assert sandbox.count("create") <= good
    rerun = await client.customers.bulk_create(
        people(200), journal=FileJournal(tmp_path / "job.journal"), reconcile=by_email(client)
    )
    assert len(rerun.succeeded) == 200
    assert max(emails(sandbox).values()) == 1


async def test_a_failing_journal_ends_a_sync_too(
    make_sandbox: SandboxFactory, make_client: ClientFactory, tmp_path: Path
) -> None:
    sandbox = await make_sandbox(batch=False)
    client = make_client(sandbox)
    with pytest.raises(OSError, match="No space left"):
        await asyncio.wait_for(
            client.customers.sync(
                list(people(50)), key="email", journal=FailingJournal(tmp_path / "j", 3)
            ),
            BOUND,
        )
    assert library_tasks() == []
    result = await client.customers.sync(list(people(50)), key="email")
    assert len(result.outcomes) == 50
    assert max(emails(sandbox).values()) == 1


async def test_a_raising_hook_ends_a_sync_with_its_error(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await make_sandbox(batch=False)
    client = make_client(sandbox)

    def hook(progress: BulkProgress) -> None:
        if progress.done >= 5:
            raise Broken("sync hook")

    with pytest.raises(Broken):
        await asyncio.wait_for(
            client.customers.sync(list(people(100)), key="email", on_progress=hook), BOUND
        )
    assert library_tasks() == []
    again = await client.customers.sync(list(people(100)), key="email")
    assert Counter(o.status for o in again.outcomes)["failed"] == 0
    assert emails(sandbox) == Counter(f"person{n}@example.com" for n in range(100))


@pytest.mark.parametrize("when", [1, 10, 60])
async def test_a_cancelled_job_ends_at_once_and_leaves_no_task(
    make_sandbox: SandboxFactory, make_client: ClientFactory, tmp_path: Path, when: int
) -> None:
    # A server that stops answering after a while: requests hang on the wire.
    sandbox = await make_sandbox(batch=False, latency=0.01)
    client = make_client(sandbox, timeout=60.0)
    journal = tmp_path / "job.journal"
    job = asyncio.ensure_future(
        client.customers.bulk_create(people(500), journal=str(journal), concurrency=8)
    )
    await wait_until(lambda: sandbox.count("create") >= when)
    sandbox.inject("stall", count=100)
    sandbox.faults.stall_seconds = 3600
    await asyncio.sleep(0.05)
    job.cancel()
    done, _ = await asyncio.wait({job}, timeout=BOUND)
    assert done == {job}
    assert job.cancelled()
    assert library_tasks() == []
    created = emails(sandbox)
    states = journal_states(journal)
    assert {i for i, s in states.items() if s == "created"} <= {
        int(e.removeprefix("person").removesuffix("@example.com")) for e in created
    }


async def test_a_bad_record_fails_alone_and_the_job_goes_on(
    sandbox: SandboxServer, make_client: ClientFactory
) -> None:
    client = make_client(sandbox)
    records: list[object] = list(people(100))
    records[30] = 42
    records[31] = {"account": True, "email": "odd@example.com"}
    records[32] = None
    result = await client.customers.bulk_create(records, batch_size=None)  # type: ignore[arg-type]
    assert [o.index for o in result.outcomes] == list(range(100))
    assert [o.index for o in result.failed] == [30, 31, 32]
    for outcome in result.failed:
        assert isinstance(outcome.error, ValidationError)
        assert str(outcome.error).startswith("this record ")  # the outcome says which
    assert "account" in str(result.outcomes[31].error)
    assert len(result.succeeded) == 97
    assert len(emails(sandbox)) == 97


async def test_bad_ids_and_pairs_fail_alone_in_updates_and_deletes(
    sandbox: SandboxServer, make_client: ClientFactory
) -> None:
    client = make_client(sandbox)
    [rid] = sandbox.seed("customers", [{"account": "A"}])
    updated = await client.customers.bulk_update(
        [(rid, {"phone": "1"}), ("x7", {"phone": "2"}), "nonsense", (rid, {"phone": True})]  # type: ignore[list-item]
    )
    assert [o.status for o in updated.outcomes] == ["updated", "failed", "failed", "failed"]
    deleted = await client.customers.bulk_delete([rid, "abc", -1, 3.5])  # type: ignore[list-item]
    assert [o.status for o in deleted.outcomes] == ["deleted", "failed", "failed", "failed"]
    assert sandbox.count() == 2  # only the good ones were sent


async def test_a_bad_record_fails_alone_in_a_sync(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await make_sandbox()
    sandbox.seed("customers", list(people(10)))
    client = make_client(sandbox)
    records: list[object] = [*people(12)]
    records[3] = "not a record"
    records[5] = {"account": ["x"], "email": "person5@example.com"}
    result = await client.customers.sync(records, key="email")  # type: ignore[arg-type]
    assert [o.status for o in result.outcomes] == [
        "unchanged", "unchanged", "unchanged", "failed", "unchanged", "failed",
        "unchanged", "unchanged", "unchanged", "unchanged", "created", "created",
    ]  # fmt: skip
    assert "this record is a str" in str(result.outcomes[3].error)
    assert "account" in str(result.outcomes[5].error)


async def test_progress_moves_per_record_without_a_batch_path(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await make_sandbox(batch=False)
    client = make_client(sandbox)
    seen: list[BulkProgress] = []
    result = await client.customers.bulk_create(people(300), total=300, on_progress=seen.append)
    assert len(result.succeeded) == 300
    assert [p.done for p in seen] == list(range(1, 301))  # one record at a time
    assert all(p.eta_seconds is not None and p.eta_seconds > 0 for p in seen[:-1])
    assert seen[-1].eta_seconds == 0


async def test_a_user_hook_in_reconcile_that_raises_leaves_the_record_unknown(
    sandbox: SandboxServer, make_client: ClientFactory, tmp_path: Path
) -> None:
    client = make_client(sandbox)
    journal = tmp_path / "job.journal"
    sandbox.inject("drop", after_processing=True)
    first = await client.customers.bulk_create(people(3), batch_size=None, journal=str(journal))
    assert [o.status for o in first.outcomes].count("unknown") == 1

    async def broken(record: Mapping[str, str]) -> Customer | None:
        raise Broken("reconcile bug")

    rerun = await asyncio.wait_for(
        client.customers.bulk_create(
            people(3), batch_size=None, journal=str(journal), reconcile=broken
        ),
        BOUND,
    )
    [unknown] = rerun.unknown
    assert "reconcile bug" in str(unknown.error)
    assert isinstance(unknown.error.__cause__ if unknown.error else None, Broken)
    assert len(emails(sandbox)) == 3  # nothing was sent again


async def test_a_retried_update_the_server_may_have_applied_is_unknown_not_failed(
    sandbox: SandboxServer, make_client: ClientFactory
) -> None:
    client = make_client(sandbox)
    [rid] = sandbox.seed("customers", [{"account": "A", "phone": "1"}])
    sandbox.inject("error", status=500, after_processing=True)  # applied, then failed
    sandbox.inject("error", status=400)  # the retry is refused
    result = await client.customers.bulk_update([(rid, {"phone": "555"})])
    [outcome] = result.outcomes
    assert sandbox.store["customers"][rid]["phone"] == "555"  # it was applied
    assert outcome.status == "unknown"
    assert "earlier attempt may have been processed" in str(outcome.error)


async def test_a_batch_the_server_refuses_is_journaled_unsent_so_a_rerun_sends_it(
    make_sandbox: SandboxFactory, make_client: ClientFactory, tmp_path: Path
) -> None:
    sandbox = await make_sandbox(batch=False, latency=0.01)
    client = make_client(sandbox)
    journal = tmp_path / "job.journal"
    job = asyncio.ensure_future(
        client.customers.bulk_create(people(100), journal=str(journal), concurrency=2)
    )
    await wait_until(lambda: sandbox.count("create") >= 4)
    job.cancel()
    await asyncio.wait({job}, timeout=BOUND)
    states = Counter(journal_states(journal).values())
    assert states["unsent"] > 0  # refused as a batch, never sent one by one
    assert states["sent"] <= 2  # at most what was on the wire when cancelled
    rerun = await client.customers.bulk_create(people(100), journal=str(journal))  # no hook
    assert len(rerun.succeeded) + len(rerun.unknown) == 100
    assert len(rerun.unknown) <= 2
    assert max(emails(sandbox).values()) == 1


async def test_without_a_batch_path_the_job_keeps_its_concurrency(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await make_sandbox(batch=False, latency=0.02)
    in_flight = peak = 0

    def watch(event: Event) -> None:
        nonlocal in_flight, peak
        if event.kind == "request_sent":
            in_flight += 1
            peak = max(peak, in_flight)
        elif event.kind == "response_received":
            in_flight -= 1

    client = make_client(sandbox, event_hooks=[watch])
    result = await client.customers.bulk_create(people(60), concurrency=8)  # batch_size 100
    assert len(result.succeeded) == 60
    assert peak == 8  # one batch of 60 refused: its records go out eight at a time


async def test_an_async_progress_hook_is_awaited(
    sandbox: SandboxServer, make_client: ClientFactory
) -> None:
    client = make_client(sandbox)
    seen: list[int] = []

    async def hook(progress: BulkProgress) -> None:
        await asyncio.sleep(0)
        seen.append(progress.done)

    await client.customers.bulk_create(people(5), batch_size=None, on_progress=hook)
    assert seen == [1, 2, 3, 4, 5]


async def test_a_job_whose_reader_stops_after_it_failed_leaves_no_unretrieved_error(
    sandbox: SandboxServer, make_client: ClientFactory, tmp_path: Path
) -> None:
    client = make_client(sandbox)
    journal = str(tmp_path / "job.journal")
    await client.customers.bulk_create(people(20), journal=journal)
    changed = list(people(20))
    changed[10]["account"] = "Changed"  # the job fails there: not the journal's input
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    try:
        stream = client.customers.bulk_create_iter(changed, journal=journal)
        async with contextlib.aclosing(stream) as outcomes:
            async for _ in outcomes:
                await asyncio.sleep(0.05)  # meanwhile the job fails
                break  # and the reader leaves before hearing of it
        del stream, outcomes
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    assert reported == []


async def test_a_record_with_keys_of_mixed_types_does_not_end_the_job(
    sandbox: SandboxServer, make_client: ClientFactory, tmp_path: Path
) -> None:
    client = make_client(sandbox)
    odd: dict[object, object] = {"account": "x", 1: "y"}
    records = [odd, {"account": "ok"}]
    journal = str(tmp_path / "job.journal")
    result = await client.customers.bulk_create(records, journal=journal)  # type: ignore[arg-type]
    assert [o.status for o in result.outcomes] == ["created", "created"]
    rerun = await client.customers.bulk_create(records, journal=journal)  # type: ignore[arg-type]
    assert all(o.resumed for o in rerun.outcomes)  # the same digest both times


@pytest.mark.parametrize("retry_failed", [True, False])
async def test_a_failed_record_fixed_in_place_is_sent_on_rerun_and_a_created_one_never_twice(
    sandbox: SandboxServer, make_client: ClientFactory, tmp_path: Path, retry_failed: bool
) -> None:
    client = make_client(sandbox)
    journal = str(tmp_path / "job.journal")
    records = [{"account": "Ada"}, {"email": "nameless@example.com"}, {"account": "Al"}]
    first = await client.customers.bulk_create(records, journal=journal)
    assert [o.status for o in first.outcomes] == ["created", "failed", "created"]
    records[1] = {"account": "Named", "email": "nameless@example.com"}  # fixed where it stood
    second = await client.customers.bulk_create(records, journal=journal, retry_failed=retry_failed)
    assert [o.status for o in second.outcomes] == ["created", "created", "created"]
    assert [o.resumed for o in second.outcomes] == [True, False, True]
    records[0] = {"account": "Ada Lovelace"}  # a record already created, changed
    with pytest.raises(InputChangedError) as raised:
        await client.customers.bulk_create(records, journal=journal)
    assert raised.value.index == 0
    assert "sync()" in str(raised.value)
    assert sorted(str(r["account"]) for r in sandbox.records("customers")) == [
        "Ada", "Al", "Named",
    ]  # fmt: skip


async def test_a_removed_line_that_shifts_the_input_never_sends_a_record_twice(
    sandbox: SandboxServer, make_client: ClientFactory, tmp_path: Path
) -> None:
    client = make_client(sandbox)
    journal = str(tmp_path / "job.journal")
    records = [{"account": "Ada"}, {"email": "nameless@example.com"}, {"account": "Al"}]
    first_input = list(records)
    first = await client.customers.bulk_create(records, journal=journal)
    assert [o.status for o in first.outcomes] == ["created", "failed", "created"]
    del records[1]  # the bad line removed instead of fixed: Al moves up to the failed place
    with pytest.raises(InputChangedError) as raised:
        await client.customers.bulk_create(records, journal=journal)
    assert raised.value.index == 1
    again = [*first_input, {"account": "Al"}]  # Al once more, where no entry is
    with pytest.raises(InputChangedError) as raised:
        await client.customers.bulk_create(again, journal=journal)
    assert raised.value.index == 3
    assert sorted(str(r["account"]) for r in sandbox.records("customers")) == ["Ada", "Al"]
