"""Jobs under drawn servers, inputs and faults: the promises hold after every step.

A hypothesis state machine draws a server (documented or shipped style; pages capped
with or without totals; a batch path or not; 500s, dropped connections, latency), then
runs ``bulk_create``, ``bulk_update``, ``bulk_delete`` and ``sync`` against it with drawn
input (duplicate keys, records that cannot be sent, text with ``&``, quotes and umlauts,
very large and very small money) and drawn faults of the caller's own (a raising hook,
a journal whose disk fills up, a cancel at a random moment, each followed by a rerun
from the journal). After every step it checks:

- one outcome per input record;
- no key stored twice;
- every record reported created, updated or unchanged is on the server as reported;
- no record reported failed was acted on;
- the step ended within its bound, and no task of the library is left running.

``make test`` runs a fixed, seeded set of examples; ``make stress`` runs many more
(``CLOUDONEX_STATEFUL_EXAMPLES``), drawn afresh each time.
"""

from __future__ import annotations

import asyncio
import html
import itertools
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import attrs
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from cloudonex_async import (
    BulkProgress,
    BulkResult,
    Client,
    Event,
    FileJournal,
    Journal,
    JournalEntry,
    LocalLimiter,
    Model,
    RetryPolicy,
    SyncResult,
)
from cloudonex_async._shipped import sanitize_text
from cloudonex_async.testing import Faults, SandboxServer

from .conftest import library_tasks

T = TypeVar("T")

EXAMPLES = int(os.environ.get("CLOUDONEX_STATEFUL_EXAMPLES", "0"))
BOUND = 30.0  # seconds a step may take before it counts as hung

TEXTS = ["Müller & Söhne", 'Say "hi"', "O'Brien & Co", "5 > 3", "Ærøskøbing", "plain", " padded "]
MONEY = [
    Decimal("0.01"),
    Decimal("0.0001"),
    Decimal("1500.10"),
    Decimal("-5.50"),
    Decimal("12345678901234567.89"),
    Decimal("99999999999999999999999999.9999"),
]


@attrs.frozen
class Server:
    """The server a run draws."""

    style: str
    paging: str
    cap: int
    batch: bool
    error_rate: float
    drop_rate: float
    latency: float


servers = st.one_of(
    st.builds(
        Server,
        style=st.just("documented"),
        paging=st.sampled_from(["meta", "total_records", "plain"]),
        cap=st.sampled_from([1000, 7, 20]),
        batch=st.booleans(),
        error_rate=st.sampled_from([0.0, 0.1]),
        drop_rate=st.sampled_from([0.0, 0.05]),
        latency=st.sampled_from([0.0, 0.001]),
    ),
    st.builds(
        Server,
        style=st.just("shipped"),
        paging=st.just("none"),
        cap=st.just(0),
        batch=st.just(False),
        error_rate=st.sampled_from([0.0, 0.1]),
        drop_rate=st.sampled_from([0.0, 0.05]),
        latency=st.just(0.0),
    ),
)
faults = st.one_of(
    st.just(("none", 0)),
    st.tuples(st.sampled_from(["hook", "journal", "cancel"]), st.integers(0, 12)),
)
contents = st.lists(st.tuples(st.sampled_from(TEXTS), st.sampled_from(MONEY)), max_size=14)


class Broken(Exception):
    """A bug in the caller's hook."""


class FullDisk(Journal):
    """A file journal whose disk fills up after ``good`` writes."""

    def __init__(self, path: Path, good: int) -> None:
        self.file = FileJournal(path)
        self.good = good

    async def load(self, job: Mapping[str, str]) -> dict[int, JournalEntry]:
        return await self.file.load(job)

    async def write(self, entries: list[JournalEntry]) -> None:
        if self.good <= 0:
            raise OSError(28, "No space left on device")
        self.good -= 1
        await self.file.write(entries)


class Jobs(RuleBasedStateMachine):
    """Bulk jobs and syncs against one drawn sandbox; see the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = Path(tempfile.mkdtemp(prefix="cloudonex-stateful-"))
        self.serial = itertools.count()
        self.sandbox: SandboxServer | None = None
        self.client: Client | None = None
        self.server = Server("documented", "meta", 1000, True, 0.0, 0.0, 0.0)
        self.sent = 0  # requests the client has sent
        self.cancel_after: tuple[int, asyncio.Event] | None = None

    def count(self, event: Event) -> None:
        """The client's event hook: counts requests, and says when to cancel."""
        if event.kind == "request_sent":
            self.sent += 1
            if self.cancel_after is not None and self.sent >= self.cancel_after[0]:
                self.cancel_after[1].set()

    # -- the world ----------------------------------------------------------------------

    @initialize(server=servers)
    def start(self, server: Server) -> None:
        self.server = server

        async def go() -> None:
            faults = Faults(error_rate=server.error_rate, drop_rate=server.drop_rate, seed=7)
            if server.style == "shipped":
                self.sandbox = SandboxServer(style="shipped", faults=faults)
            else:
                self.sandbox = SandboxServer(
                    paging=server.paging,  # type: ignore[arg-type]
                    max_page_size=server.cap,
                    batch=server.batch,
                    faults=faults,
                    latency=server.latency,
                )
            await self.sandbox.start()
            self.client = Client(
                base_url=self.sandbox.base_url,
                api_key=self.sandbox.api_key,
                profile="shipped" if server.style == "shipped" else "documented",
                limiter=LocalLimiter(),
                # Enough attempts that a 15% fault rate never fails a read for good.
                retry=RetryPolicy(attempts=10, backoff_base=0.001, backoff_max=0.005),
                timeout=5.0,
                event_hooks=[self.count],
            )

        self.loop.run_until_complete(go())

    def teardown(self) -> None:
        async def stop() -> None:
            if self.client is not None:
                await self.client.close()
            if self.sandbox is not None:
                await self.sandbox.close()

        try:
            self.loop.run_until_complete(stop())
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def shipped(self) -> bool:
        return self.server.style == "shipped"

    @property
    def resource(self) -> Any:
        assert self.client is not None
        return self.client.customers if self.shipped else self.client.products

    @property
    def table(self) -> str:
        return "customers" if self.shipped else "products"

    @property
    def key(self) -> str:
        return "email" if self.shipped else "name"

    def rows(self) -> dict[int, dict[str, object]]:
        assert self.sandbox is not None
        return {int(str(r["id"])): r for r in self.sandbox.records(self.table)}

    def by_key(self) -> dict[str, dict[str, object]]:
        return {str(r[self.key]): r for r in self.rows().values()}

    def record(self, text: str, money: Decimal) -> dict[str, object]:
        n = next(self.serial)
        if self.shipped:
            return {"account": f"{text} {n}", "email": f"u{n}@example.com", "city": text}
        return {"name": f"{text} {n}", "price": money, "description": text}

    def changes(self, text: str, money: Decimal) -> dict[str, object]:
        if self.shipped:
            return {"city": f"{text} {next(self.serial)}"}
        return {"description": f"{text} {next(self.serial)}", "price": money}

    def bad(self, n: int) -> object:
        """A record that cannot be sent: not a mapping, or a value that cannot be read."""
        if n % 2:
            return 42
        return {"account": True, "email": "bad@example.com"} if self.shipped else {"price": "1,5"}

    def holds(self, row: Mapping[str, object] | None, fields: Mapping[str, object]) -> bool:
        """Whether a stored row holds ``fields`` as the server stores what was sent."""
        if row is None:
            return False
        for name, sent in fields.items():
            got = row.get(name)
            if isinstance(sent, Decimal):
                if got is None or Decimal(str(got)) != sent:
                    return False
            elif isinstance(sent, str) and self.shipped:
                if got != sanitize_text(sent):
                    return False
            elif got != sent:
                return False
        return True

    # -- running a job with a fault, then rerunning it from its journal ------------------

    def run(self, step: Callable[[], Awaitable[T]]) -> T:
        async def bounded() -> T:
            result = await asyncio.wait_for(step(), BOUND)  # a hang fails the test
            assert library_tasks() == [], "a task of the library was left running"
            return result

        return self.loop.run_until_complete(bounded())

    async def faulted(
        self, job: Callable[[Journal, Callable[[BulkProgress], None] | None], Awaitable[T]],
        fault: tuple[str, int],
    ) -> T:  # fmt: skip
        """Run ``job`` meeting ``fault``; if it was stopped, rerun it from its journal."""
        assert self.sandbox is not None
        kind, at = fault
        path = self.dir / f"journal-{next(self.serial)}"
        journal: Journal = FullDisk(path, at) if kind == "journal" else FileJournal(path)
        calls = 0

        def hook(progress: BulkProgress) -> None:
            nonlocal calls
            calls += 1
            if calls > at:
                raise Broken("the caller's hook failed")

        task = asyncio.ensure_future(job(journal, hook if kind == "hook" else None))
        if kind == "cancel":  # once ``at`` more requests have gone out
            self.cancel_after = (self.sent + at, asyncio.Event())
            waiter = asyncio.ensure_future(self.cancel_after[1].wait())
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            task.cancel()
        try:
            return await task
        except (Broken, OSError, asyncio.CancelledError):
            assert kind != "none"
        assert library_tasks() == [], "a stopped job left a task running"
        return await job(FileJournal(path), None)

    async def reconcile(self, record: Mapping[str, object]) -> Model | None:
        key = str(record.get(self.key)).strip().casefold()
        found = await self.resource.list(**{self.key: record.get(self.key)}).collect()
        same = [m for m in found if str(getattr(m, self.key)).strip().casefold() == key]
        return same[0] if len(same) == 1 else None

    # -- the steps ----------------------------------------------------------------------

    @rule(
        data=contents,
        bad=st.sets(st.integers(0, 13), max_size=2),
        batch_size=st.sampled_from([None, 1, 5, 100]),
        fault=faults,
    )
    def create(
        self, data: list[tuple[str, Decimal]], bad: set[int], batch_size: int | None,
        fault: tuple[str, int],
    ) -> None:  # fmt: skip
        records: list[object] = [self.record(t, m) for t, m in data]
        bad = {n for n in bad if n < len(records)}
        for n in bad:
            records[n] = self.bad(n)

        async def job(
            journal: Journal, hook: Callable[[BulkProgress], None] | None
        ) -> BulkResult[Any]:
            return await self.resource.bulk_create(  # type: ignore[no-any-return]
                records,
                batch_size=batch_size,
                journal=journal,
                on_progress=hook,
                reconcile=self.reconcile,
            )

        result = self.run(lambda: self.faulted(job, fault))
        assert [o.index for o in result.outcomes] == list(range(len(records)))
        rows, keyed = self.rows(), self.by_key()
        for outcome in result.outcomes:
            record = records[outcome.index]
            if outcome.index in bad:
                assert outcome.status == "failed"
                continue
            assert isinstance(record, dict)
            stored = keyed.get(str(record[self.key]))
            if outcome.status == "created":
                assert outcome.record_id is not None
                assert self.holds(rows.get(outcome.record_id), record), (record, outcome)
            elif outcome.status == "failed":
                assert stored is None, f"reported failed, yet created: {record}"

    @rule(
        data=contents,
        fault=faults,
        missing=st.booleans(),
        bad=st.booleans(),
    )
    def update(
        self, data: list[tuple[str, Decimal]], fault: tuple[str, int], missing: bool, bad: bool
    ) -> None:
        before = self.rows()
        ids = sorted(before)[: len(data)]
        pairs: list[object] = [
            (rid, self.changes(t, m)) for rid, (t, m) in zip(ids, data, strict=False)
        ]
        if missing:
            pairs.append((10**9, self.changes("plain", MONEY[0])))
        if bad:
            pairs.insert(0, ("not-an-id", {"city": "x"}))

        async def job(
            journal: Journal, hook: Callable[[BulkProgress], None] | None
        ) -> BulkResult[Any]:
            return await self.resource.bulk_update(  # type: ignore[no-any-return]
                pairs, journal=journal, on_progress=hook
            )

        result = self.run(lambda: self.faulted(job, fault))
        assert [o.index for o in result.outcomes] == list(range(len(pairs)))
        after = self.rows()
        for outcome in result.outcomes:
            pair = pairs[outcome.index]
            assert isinstance(pair, tuple)
            rid, changes = pair
            if outcome.status == "updated":
                assert self.holds(after.get(rid), changes), (pair, after.get(rid))
            elif outcome.status == "failed" and isinstance(rid, int):
                assert after.get(rid) == before.get(rid), "reported failed, yet changed"

    @rule(count=st.integers(0, 6), fault=faults, again=st.booleans())
    def delete(self, count: int, fault: tuple[str, int], again: bool) -> None:
        before = self.rows()
        ids = sorted(before)[-count:] if count else []
        targets = [*ids, *ids[:1]] if again else ids  # the second delete finds it gone

        async def job(
            journal: Journal, hook: Callable[[BulkProgress], None] | None
        ) -> BulkResult[Any]:
            return await self.resource.bulk_delete(  # type: ignore[no-any-return]
                targets, journal=journal, on_progress=hook
            )

        result = self.run(lambda: self.faulted(job, fault))
        assert [o.index for o in result.outcomes] == list(range(len(targets)))
        after = self.rows()
        for outcome in result.outcomes:
            rid = targets[outcome.index]
            if outcome.status == "deleted":
                assert rid not in after
            elif outcome.status == "failed":
                assert after.get(rid) == before.get(rid), "reported failed, yet deleted"

    @rule(
        keep=st.lists(st.integers(0, 10**6), max_size=10),
        change=st.integers(0, 4),
        data=contents,
        duplicate=st.booleans(),
        bad=st.booleans(),
        fault=faults,
        strategy=st.sampled_from(["auto", "scan", "lookup"]),
    )
    def sync(
        self, keep: list[int], change: int, data: list[tuple[str, Decimal]], duplicate: bool,
        bad: bool, fault: tuple[str, int], strategy: str,
    ) -> None:  # fmt: skip
        before = self.by_key()
        fields = ("account", "email", "city") if self.shipped else ("name", "price", "description")
        good: list[dict[str, object]] = []
        held = list(before.values())
        chosen = sorted({k % len(held) for k in keep}) if held else []  # from any page
        for n, row in enumerate(held[k] for k in chosen):
            record = {f: row[f] for f in fields if row.get(f) is not None}
            if self.shipped:  # the text as it was sent, not as the server escaped it
                record = {k: html.unescape(str(v)) for k, v in record.items()}
            if n < change:
                record.update(self.changes("plain", MONEY[n % len(MONEY)]))
            good.append(record)
        good += [self.record(t, m) for t, m in data]
        if duplicate and good:
            good.append(dict(good[0]))  # both fail: a sync never guesses between them
        records: list[object] = list(good)
        if bad:
            records.insert(len(records) // 2, self.bad(1))

        async def job(
            journal: Journal, hook: Callable[[BulkProgress], None] | None
        ) -> SyncResult[Any]:
            return await self.resource.sync(  # type: ignore[no-any-return]
                records, key=self.key, journal=journal, on_progress=hook, strategy=strategy
            )

        result = self.run(lambda: self.faulted(job, fault))
        assert [o.index for o in result.outcomes] == list(range(len(records)))
        after = self.by_key()
        for outcome in result.outcomes:
            given = records[outcome.index]
            if not isinstance(given, dict):
                assert outcome.status == "failed"
                continue
            key = str(given[self.key])
            if outcome.ok:
                assert self.holds(after.get(key), given), (outcome, given, after.get(key))
            elif outcome.status == "failed":
                assert after.get(key) == before.get(key), "reported failed, yet acted on"

    # -- what holds after every step ----------------------------------------------------

    @invariant()
    def no_key_is_stored_twice(self) -> None:
        if self.sandbox is None:
            return
        keys = [str(r[self.key]) for r in self.sandbox.records(self.table)]
        assert len(keys) == len(set(keys)), "a key is stored twice"


Jobs.TestCase.settings = settings(
    max_examples=EXAMPLES or 300,
    stateful_step_count=8,
    deadline=None,
    derandomize=not EXAMPLES,  # make test: a fixed set; make stress: new ones each run
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.mark.slow
def test_jobs_keep_their_promises_whatever_the_server_input_and_faults() -> None:
    Jobs.TestCase().runTest()
