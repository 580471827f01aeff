"""Sync: make a resource hold a set of records, at the lowest request cost the budget allows.

Each input record has a key (an email, an external id) that names it on both sides. A
sync finds the remote records of those keys, the cheapest way by requests: a **scan** of
the whole listing (about total / page size requests, known from the first page) or one
filtered **lookup** per key. Then, per record: **create** it where no remote record has
its key, **update** it where a compared field differs (sending only what changed), or
leave it **unchanged**. Values are compared as the models hold them, so ``"100.00"``
against ``100`` is no change. A key that two input records share, or that several
remote records hold, fails for that key: a sync never guesses.

Writes go through the bulk machinery at ``"bulk"`` priority (batches for creates where
the server has them). A create or update whose answer was lost is settled by looking
its key up. With ``delete_missing=True``, remote records whose key is not in the input
are deleted, at most ``max_deletes`` of them.

A sync is idempotent by key: run again, it finds what the last run did and does only
what is left. A ``journal=`` makes that cheaper (records already settled are skipped)
and safe across a kill: a record whose request was sent when the process died is found
by its key, never sent blind.

A record is "not on the server" only after a walk of the listing that is proven
complete (see :mod:`cloudonex_async._pagination`), or a lookup of its key. An input
record that cannot be synced (not a mapping, no key, a value that cannot be sent) fails
alone; a raising ``on_progress`` or ``on_plan`` hook, or a failing journal, ends the
sync with its error, and its lookups and writes with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from decimal import Decimal, InvalidOperation
from typing import Generic, Literal, Protocol, TypeVar

import attrs

from ._bulk import BudgetView, BulkJob, Operation, call_hook, each, estimate_eta, key_of
from ._journal import Journal, JournalEntry, open_journal
from ._outcomes import (
    SYNC_DONE,
    BulkProgress,
    Deletion,
    Outcome,
    PlannedChange,
    SyncOutcome,
    SyncPlan,
    SyncResult,
    SyncStatus,
)
from ._pagination import Page
from ._secret import Secret
from ._tasks import task_group
from .errors import CloudOnexError, ConfigurationError, OutcomeUnknownError, ValidationError
from .models import Model

M = TypeVar("M", bound=Model)
Strategy = Literal["auto", "scan", "lookup"]
KeyOf = str | Callable[[object], object]
Normalize = Callable[[object], object]
ProgressHook = Callable[[BulkProgress], object]
PlanHook = Callable[[SyncPlan], object]
OnSend = Callable[[], Awaitable[None]]


def default_normalize(value: object) -> object:
    """Keys compare trimmed and case-folded when text; numbers as their digits."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().casefold()
        return text or None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, Decimal)):
        return str(value)
    return value


class SyncSource(Protocol[M]):
    """What a sync needs of a resource (a ``Resource`` is one)."""

    path: str
    model: type[M]

    def _input_record(self, data: object, what: str) -> tuple[dict[str, object], M]: ...

    def _scan(self, page_size: int, on_send: OnSend) -> AsyncGenerator[Page[M], None]: ...

    async def _lookup(
        self, field: str, value: object, page_size: int, on_send: OnSend
    ) -> list[M]: ...


@attrs.define
class _Input:
    index: int
    raw: object  # the key, as given
    norm: object  # the key, as compared
    payload: dict[str, object]
    model: Model
    digest: str

    @property
    def key(self) -> str | None:
        """The key as outcomes show it."""
        return _text(self.raw)


def _digest(key: object, payload: Mapping[str, object]) -> str:
    text = json.dumps([str(key), payload], sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def value_of(record: object, field: str) -> object:
    """A field of a mapping or a model (a model's unknown fields are in ``extra``)."""
    if isinstance(record, Mapping):
        return record.get(field)
    if isinstance(record, Model):
        if field in attrs.fields_dict(type(record)):
            return getattr(record, field)
        return record.extra.get(field)
    raise ConfigurationError(f"sync takes mappings or models, not {type(record).__name__}")


def same(mine: object, theirs: object) -> bool:
    """Whether two values are the same as the models hold them.

    Amounts compare as numbers (``Decimal("100.00") == 100``); nested models on the
    fields the input side sets (a remote item's id or defaults are no change); lists item
    by item. Text compares exactly; a number against text (an unknown field one side
    holds as ``"100.00"`` and the other as ``100``) compares as numbers. A secret
    compares by its value (a token the caller gives is no change to the same token).
    """
    if isinstance(mine, Secret) or isinstance(theirs, Secret):
        return same(
            mine.get_secret_value() if isinstance(mine, Secret) else mine,
            theirs.get_secret_value() if isinstance(theirs, Secret) else theirs,
        )
    if isinstance(mine, Model) and isinstance(theirs, Model):
        for field in attrs.fields(type(mine)):
            if field.name in ("id", "extra"):
                continue
            value = getattr(mine, field.name)
            if value is not None and not same(value, getattr(theirs, field.name, None)):
                return False
        return all(same(v, theirs.extra.get(k)) for k, v in mine.extra.items())
    if isinstance(mine, (list, tuple)) and isinstance(theirs, (list, tuple)):
        return len(mine) == len(theirs) and all(
            same(a, b) for a, b in zip(mine, theirs, strict=True)
        )
    if isinstance(mine, float):  # a caller's float, as written (0.1 is "0.1")
        mine = Decimal(repr(mine))
    if mine == theirs:
        return True
    if isinstance(mine, str) == isinstance(theirs, str):
        return False  # two texts differ as text ("01234" is not "1234"), numbers as numbers
    number, text = (theirs, mine) if isinstance(mine, str) else (mine, theirs)
    if isinstance(number, (int, Decimal)) and not isinstance(number, bool):
        try:  # a number one side sends as text the other side holds ("100.00" and 100)
            return Decimal(str(text).strip()) == number
        except InvalidOperation:
            return False
    return False


def changed_fields(
    mine: Model, theirs: Model, payload: Mapping[str, object], fields: Sequence[str]
) -> dict[str, object]:
    """The fields to send to make ``theirs`` hold what ``mine`` does: only what differs.

    ``mine`` is the input as the server will hold it; a remote value the client could
    not read (kept raw in ``extra`` by a lenient client) is compared raw, so it never
    passes for "no change".
    """
    known = attrs.fields_dict(type(mine))
    changes: dict[str, object] = {}
    for field in fields:
        if field not in payload:
            continue
        held = theirs.extra.get(field, getattr(theirs, field, None))
        if isinstance(held, Secret) and held:
            # The server holds a secret (a password's hash, a token) the input cannot be
            # compared with: it is set when the record is created, never updated by a
            # sync (update() sets it on purpose).
            continue
        if field in known and not (getattr(theirs, field) is None and field in theirs.extra):
            differs = not same(getattr(mine, field), getattr(theirs, field))
        elif field in known:
            differs = not same(payload[field], theirs.extra[field])
        else:
            differs = not same(mine.extra.get(field, payload[field]), theirs.extra.get(field))
        if differs:
            changes[field] = payload[field]
    return changes


class _JournalView:
    """The sync's journal, seen by one bulk job: its items are records of the input."""

    def __init__(self, journal: Journal, inputs: Sequence[_Input]) -> None:
        self._journal = journal
        self._inputs = inputs

    async def load(self, job: Mapping[str, str]) -> dict[int, JournalEntry]:
        return {}  # the sync settles earlier runs itself, by key

    async def write(self, entries: list[JournalEntry]) -> None:
        mapped = []
        for entry in entries:
            source = self._inputs[entry.index]
            mapped.append(attrs.evolve(entry, index=source.index, digest=source.digest))
        await self._journal.write(mapped)


@attrs.define
class SyncJob(Generic[M]):
    """One sync run (see the module docstring); ``run()`` or ``plan()`` it."""

    source: SyncSource[M]
    budget: BudgetView
    creates: Operation[M]
    updates: Operation[M]
    deletes: Operation[M]
    records: Iterable[object] | AsyncIterable[object]
    key: KeyOf
    remote_key: str
    normalize: Normalize = default_normalize
    fields: Sequence[str] | None = None
    strategy: Strategy = "auto"
    delete_missing: bool = False
    max_deletes: int | None = None
    journal: str | os.PathLike[str] | Journal | None = None
    concurrency: int = 8
    batch_size: int | None = 100
    batch_possible: bool = True  # False where the server has no batch path
    page_size: int = 100
    on_progress: ProgressHook | None = None
    on_plan: PlanHook | None = None
    requests: int = attrs.field(default=0, init=False)
    _count: int = attrs.field(default=0, init=False)  # input records, bad ones included
    _journal: Journal | None = attrs.field(default=None, init=False)
    _eta: float | None = attrs.field(default=None, init=False)
    _inputs: list[_Input] = attrs.field(factory=list, init=False)
    _outcomes: dict[int, SyncOutcome[M]] = attrs.field(factory=dict, init=False)
    _remote: dict[object, list[M]] = attrs.field(factory=dict, init=False)
    _chosen: str = attrs.field(default="scan", init=False)

    @property
    def chosen_strategy(self) -> str:
        """``"scan"`` or ``"lookup"``: how the remote records were found."""
        return self._chosen

    @property
    def outcomes(self) -> list[SyncOutcome[M]]:
        """The outcomes known so far (before a run: those settled without a request)."""
        return list(self._outcomes.values())

    @property
    def failed_in_plan(self) -> int:
        """Input records that failed before any write (no key, ambiguous keys)."""
        return sum(1 for o in self._outcomes.values() if o.status == "failed")

    # -- the plan ---------------------------------------------------------------------

    async def plan(self) -> tuple[list[PlannedChange], list[M]]:
        """Read the input, find the remote records, and decide what to do with each."""
        if self.delete_missing and self.strategy == "lookup":
            raise ConfigurationError(
                "delete_missing=True needs every remote record: use strategy='scan' or 'auto'"
            )
        if self.delete_missing and (
            self.max_deletes is None or isinstance(self.max_deletes, bool) or self.max_deletes < 0
        ):
            raise ConfigurationError(
                "delete_missing=True needs max_deletes= (how many remote records this run "
                "may delete at most): a guard against an empty or truncated input"
            )
        await self._read_input()
        self._journal = open_journal(self.journal)
        previous: dict[int, JournalEntry] = {}
        if self._journal is not None:
            previous = await self._journal.load(
                {"operation": "sync", "resource": self.source.path, "key": self.remote_key}
            )
        pending = self._settle(previous)
        await self._find(pending)
        changes: list[PlannedChange] = []
        for item in pending:
            changes.append(self._decide(item))
        deletions = self._deletions() if self.delete_missing else []
        for remote in deletions:
            changes.append(
                PlannedChange(None, _text(self._remote_key_of(remote)), "delete", remote.id)
            )
        return changes, deletions

    async def _read_input(self) -> None:
        """Read every input record; one that cannot be synced fails alone, with the reason."""
        async for record in each(self.records):
            index, self._count = self._count, self._count + 1
            try:
                self._inputs.append(self._input(index, record))
            except ValidationError as error:
                key = None
                if isinstance(record, (Mapping, Model)) and not callable(self.key):
                    key = _text(value_of(record, self.key))
                self._outcomes[index] = SyncOutcome(index, "failed", key, error=error)

    def _input(self, index: int, record: object) -> _Input:
        what = "this record"
        payload, stored = self.source._input_record(record, what)
        payload.pop("id", None)
        if callable(self.key):
            raw_key = compared = key_of(self.key, record, what)
        else:
            raw_key = compared = value_of(record, self.key)
            if isinstance(raw_key, str) and self.key in payload:
                compared = value_of(stored, self.key)  # as the server will hold it
        return _Input(
            index, raw_key, self.normalize(compared), payload, stored, _digest(raw_key, payload)
        )

    def _settle(self, previous: Mapping[int, JournalEntry]) -> list[_Input]:
        """Outcomes that need no request: no key, a key used twice, settled before."""
        seen: dict[object, list[_Input]] = {}
        for item in self._inputs:
            if item.norm is not None:
                seen.setdefault(item.norm, []).append(item)
        pending = []
        for item in self._inputs:
            entry = previous.get(item.index)
            if item.norm is None:
                self._fail(item, f"no key: the record has no {self.remote_key!r} to match by")
            elif len(seen[item.norm]) > 1:
                others = tuple(i.index for i in seen[item.norm] if i is not item)
                at = ", ".join(map(str, others))
                many = "s" if len(others) > 1 else ""
                self._fail(
                    item,
                    f"the key {item.key!r} is also the key of the input record{many} at index {at}",
                    same_key=others,
                )
            elif entry is not None and entry.digest == item.digest and entry.state in SYNC_DONE:
                state: SyncStatus = entry.state  # type: ignore[assignment]
                self._outcomes[item.index] = SyncOutcome(
                    item.index, state, item.key, record_id=entry.record_id, resumed=True
                )
            else:
                pending.append(item)
        return pending

    def _fail(self, item: _Input, reason: str, same_key: tuple[int, ...] = ()) -> None:
        error = ConfigurationError(f"{reason}; this record was not synced")
        self._outcomes[item.index] = SyncOutcome(
            item.index, "failed", item.key, error=error, same_key=same_key
        )

    async def _find(self, pending: Sequence[_Input]) -> None:
        """Fill ``_remote`` for the pending keys: by a scan, or a lookup per key."""
        if not pending and not self.delete_missing:
            return
        pages = self.source._scan(self.page_size, self._count_request)
        first = await anext(pages, None)
        if first is not None:
            self._index(first.items)
        complete = first is None or first.last
        missing = [item for item in pending if item.norm not in self._remote]
        scan_cost = self._scan_cost(first)
        choose = self.strategy
        if choose == "auto":
            cheaper = complete or self.delete_missing or scan_cost <= len(missing)
            choose = "scan" if cheaper else "lookup"
        self._chosen = choose
        if choose == "scan":
            # The walk ends only where its end is proven (an empty page or the totals),
            # so a key not found in it is not on the server.
            async with contextlib.aclosing(pages):
                if not complete:
                    async for page in pages:
                        self._index(page.items)
            return
        await pages.aclose()
        lanes = asyncio.Semaphore(self.concurrency)

        async def look_up(item: _Input) -> None:
            async with lanes:
                found = await self._look_up(item)
                self._remote.setdefault(item.norm, [])
                for model in found:
                    if model not in self._remote[item.norm]:
                        self._remote[item.norm].append(model)

        async with task_group() as group:
            for item in missing:
                group.create_task(look_up(item))

    async def _count_request(self) -> None:
        """Counts every request the sync's reads send (the client calls it per attempt)."""
        self.requests += 1

    def _scan_cost(self, first: Page[M] | None) -> int:
        """Requests a scan still costs after its first page."""
        if first is None or first.last:
            return 0
        if first.total_pages is not None:  # counted with the page size really served
            return first.total_pages - 1
        if first.total_records is not None:
            return max(1, math.ceil(first.total_records / len(first.items))) - 1
        return 10**9  # no totals: assume a long listing, and look keys up instead

    async def _look_up(self, item: _Input) -> list[M]:
        """The remote records with this key: a filtered listing, matched by the normal form."""
        raw, norm = item.raw, item.norm
        values = [raw]
        if isinstance(raw, str) and isinstance(norm, str) and norm != raw:
            values.append(norm)  # servers filter exactly: ask for the normal form too
        found: list[M] = []
        for value in values:
            found_now = await self.source._lookup(
                self.remote_key, value, self.page_size, self._count_request
            )
            for model in found_now:
                if self.normalize(self._remote_key_of(model)) == norm and model not in found:
                    found.append(model)
        return found

    def _index(self, models: Iterable[M]) -> None:
        for model in models:
            norm = self.normalize(self._remote_key_of(model))
            if norm is not None:
                self._remote.setdefault(norm, []).append(model)

    def _remote_key_of(self, model: Model) -> object:
        return value_of(model, self.remote_key)

    def _decide(self, item: _Input) -> PlannedChange:
        matches = self._remote.get(item.norm, [])
        if len(matches) > 1:
            ids = ", ".join(str(m.id) for m in matches)
            self._fail(item, f"several remote records ({ids}) have the key {item.key!r}")
            return PlannedChange(item.index, item.key, "failed", reason="duplicate remote key")
        if not matches:
            return PlannedChange(item.index, item.key, "create", changes=item.payload)
        remote = matches[0]
        fields = self.fields if self.fields is not None else list(item.payload)
        # The key matched once normalized: "Jane@X.com " is no change to "jane@x.com".
        fields = [f for f in fields if f != self.remote_key]
        changes = changed_fields(item.model, remote, item.payload, fields)
        if not changes:
            self._outcomes[item.index] = SyncOutcome(
                item.index, "unchanged", item.key, remote, remote.id
            )
            return PlannedChange(item.index, item.key, "unchanged", remote.id)
        return PlannedChange(item.index, item.key, "update", remote.id, changes)

    def _deletions(self) -> list[M]:
        wanted = {item.norm for item in self._inputs if item.norm is not None}
        return [
            models[0]
            for norm, models in self._remote.items()
            if norm not in wanted and len(models) == 1 and models[0].id is not None
        ]

    def estimate(self, changes: Sequence[PlannedChange]) -> int:
        """The requests a real run costs: the finding again, then every write."""
        count = {
            a: sum(1 for c in changes if c.action == a) for a in ("create", "update", "delete")
        }
        deletes = min(self.max_deletes or 0, count["delete"])  # deletes stop at max_deletes
        size = self.batch_size if self.batch_possible and self.batch_size else 1
        return self.requests + math.ceil(count["create"] / size) + count["update"] + deletes

    # -- the run -------------------------------------------------------------------------

    async def run(self, changes: list[PlannedChange], deletions: list[M]) -> SyncResult[M]:
        """Carry the plan out and return one outcome per input record."""
        by_index = {item.index: item for item in self._inputs}
        creates = [
            by_index[c.index] for c in changes if c.action == "create" and c.index is not None
        ]
        updates = [c for c in changes if c.action == "update" and c.index is not None]
        await self._report()
        if creates:
            await self._create(creates)
        if updates:
            await self._update(updates, by_index)
        removed = await self._delete(deletions) if deletions else []
        outcomes = [self._outcomes[index] for index in range(self._count)]
        return SyncResult(outcomes, removed, self._chosen, self.requests)

    async def _create(self, items: list[_Input]) -> None:
        by_payload = {id(item.payload): item for item in items}

        async def by_key(payload: object) -> Model | None:
            # A create whose answer was lost: the record exists if its key does.
            item = by_payload[id(payload)]
            found = await self._look_up(item)
            if len(found) > 1:  # never "missing": a resend would add yet another copy
                ids = ", ".join(str(m.id) for m in found)
                raise OutcomeUnknownError(
                    f"several remote records ({ids}) have the key {item.key!r}; this "
                    "record was not sent again"
                )
            return found[0] if found else None

        job = BulkJob(
            self.creates,
            [item.payload for item in items],
            budget=self.budget,
            concurrency=self.concurrency,
            batch_size=self.batch_size,
            journal=self._view(items),
            reconcile=by_key,
            on_progress=self._keep_eta,
        )
        try:
            async with contextlib.aclosing(job.__aiter__()) as outcomes:
                async for outcome in outcomes:
                    item = items[outcome.index]
                    self._outcomes[item.index] = self._from_bulk(item, outcome, item.payload)
                    await self._report()
        finally:
            self.requests += job.requests

    def _view(self, items: Sequence[_Input]) -> _JournalView | None:
        return None if self._journal is None else _JournalView(self._journal, items)

    async def _update(self, changes: list[PlannedChange], by_index: Mapping[int, _Input]) -> None:
        items = [by_index[c.index] for c in changes if c.index is not None]
        job = BulkJob(
            self.updates,
            [(c.record_id, dict(c.changes)) for c in changes],
            budget=self.budget,
            concurrency=self.concurrency,
            journal=self._view(items),
            on_progress=self._keep_eta,
        )
        unknown: list[tuple[_Input, PlannedChange]] = []
        try:
            async with contextlib.aclosing(job.__aiter__()) as outcomes:
                async for outcome in outcomes:
                    item, change = items[outcome.index], changes[outcome.index]
                    if outcome.status == "unknown":
                        unknown.append((item, change))
                    self._outcomes[item.index] = self._from_bulk(item, outcome, change.changes)
                    await self._report()
        finally:
            self.requests += job.requests
        for item, change in unknown:  # an answer was lost: see what the server holds
            await self._settle_update(item, change)

    async def _settle_update(self, item: _Input, change: PlannedChange) -> None:
        try:
            found = await self._look_up(item)
        except CloudOnexError:
            return  # still unknown
        if len(found) == 1 and not changed_fields(
            item.model, found[0], item.payload, list(change.changes)
        ):
            self._outcomes[item.index] = SyncOutcome(
                item.index, "updated", item.key, found[0], found[0].id, change.changes
            )

    async def _delete(self, remotes: list[M]) -> list[Deletion]:
        allowed = remotes[: self.max_deletes or 0]
        skipped = [
            Deletion(_text(self._remote_key_of(r)), r.id, "skipped")
            for r in remotes[len(allowed) :]
        ]
        if not allowed:
            return skipped
        job = BulkJob(
            self.deletes,
            [r.id for r in allowed],
            budget=self.budget,
            concurrency=self.concurrency,
        )
        done: dict[int, Deletion] = {}
        try:
            async with contextlib.aclosing(job.__aiter__()) as outcomes:
                async for outcome in outcomes:
                    remote = allowed[outcome.index]
                    status: Literal["deleted", "failed", "unknown"] = "deleted"
                    if not outcome.ok:
                        status = "unknown" if outcome.status == "unknown" else "failed"
                    key = _text(self._remote_key_of(remote))
                    done[outcome.index] = Deletion(key, remote.id, status, outcome.error)
        finally:
            self.requests += job.requests
        return [done[n] for n in sorted(done)] + skipped

    def _from_bulk(
        self, item: _Input, outcome: Outcome[M], changes: Mapping[str, object]
    ) -> SyncOutcome[M]:
        status: SyncStatus
        if outcome.status in ("created", "updated"):
            status = outcome.status
        elif outcome.status == "failed":
            status = "failed"
        else:
            status = "unknown"
        error = outcome.error
        if status == "unknown" and error is None:
            error = OutcomeUnknownError("the outcome could not be learned")
        return SyncOutcome(
            item.index, status, item.key, outcome.model, outcome.record_id, changes, error
        )

    # -- progress ---------------------------------------------------------------------

    def _keep_eta(self, progress: BulkProgress) -> None:
        self._eta = progress.eta_seconds

    async def _report(self) -> None:
        """Tell ``on_progress`` where the sync stands: records settled out of the input."""
        if self.on_progress is None:
            return
        counts = {"succeeded": 0, "failed": 0, "unknown": 0}
        for outcome in self._outcomes.values():
            counts["succeeded" if outcome.ok else outcome.status] += 1
        await call_hook(
            self.on_progress,
            BulkProgress(
                done=len(self._outcomes),
                total=self._count,
                eta_seconds=self._eta,
                budget_remaining=self.budget.rate_limit.remaining,
                **counts,
            ),
        )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


async def run_sync(job: SyncJob[M], *, dry_run: bool) -> SyncResult[M] | SyncPlan:
    """Plan ``job`` and, unless ``dry_run``, carry it out.

    ``job.on_plan`` is called with the plan before the first write; if it raises,
    nothing is written and the sync ends with its error.
    """
    changes, deletions = await job.plan()
    if dry_run or job.on_plan is not None:
        plan = _summarize(job, changes)
        if dry_run:
            return plan
        assert job.on_plan is not None
        await call_hook(job.on_plan, plan)
    return await job.run(changes, deletions)


def _summarize(job: SyncJob[M], changes: list[PlannedChange]) -> SyncPlan:
    counted = {a: sum(1 for c in changes if c.action == a) for a in
               ("create", "update", "unchanged", "delete", "failed")}  # fmt: skip
    requests = job.estimate(changes)
    status = job.budget.rate_limit
    eta = estimate_eta(
        max(0, requests - job.requests), status, now=job.budget.clock.time(), rate=None
    )
    return SyncPlan(
        strategy=job.chosen_strategy,
        creates=counted["create"],
        updates=counted["update"],
        unchanged=counted["unchanged"],
        deletes=counted["delete"],
        failed=job.failed_in_plan,
        settled=sum(1 for o in job.outcomes if o.resumed),
        requests=requests,
        requests_spent=job.requests,
        eta_seconds=eta,
        changes=changes,
    )


__all__ = ["SyncJob", "default_normalize", "run_sync"]
