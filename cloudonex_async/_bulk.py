"""Bulk jobs: fan records out under the budget and account for every one of them.

A job streams its input (never loading it whole), groups records into units (a batch
request, or one record each), and runs ``concurrency`` workers over the units. Each
record ends with exactly one :class:`Outcome`: done (``created``, ``updated`` or
``deleted``), ``failed`` (the server certainly did not act: a 4xx, or never sent) or
``unknown`` (the request may have been processed).

With ``journal=PATH`` every record's state is appended and fsync'd (``sent`` before the
request leaves), so a rerun after a crash skips what is done, and never sends again
what may already exist: such records go to the ``reconcile=`` hook, which looks them
up. Only a record the hook says does not exist is sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Generic, Literal, TypeVar

import attrs

from ._hooks import BEFORE_SEND
from ._journal import Journal, JournalEntry
from ._protocol import JSONValue, created_id
from ._ratelimit import RateLimitStatus, reserve_size
from .errors import (
    APIError,
    CloudOnexError,
    ConfigurationError,
    CreatedWithoutIdError,
    NotFoundError,
    OutcomeUnknownError,
    TransportError,
    UnsupportedError,
    ValidationError,
)
from .models import Model

if TYPE_CHECKING:
    from .resources._base import Resource

M = TypeVar("M", bound=Model)
R = TypeVar("R")

Status = Literal["created", "updated", "deleted", "failed", "unknown"]
DONE: frozenset[str] = frozenset({"created", "updated", "deleted"})
DEFAULT_BULK_CONCURRENCY = 8
DEFAULT_BATCH_SIZE = 100


@attrs.frozen
class Outcome(Generic[M]):
    """How one input record ended.

    Attributes:
        index: its position in the input. key: the caller's key for it (``key=``).
        status: ``created``/``updated``/``deleted``, ``failed`` or ``unknown``.
        model: the record as the server returned it (or as ``reconcile`` found it).
        record_id: its id, when known. error: why it failed or is unknown.
        resumed: the outcome comes from the journal of an earlier run.
    """

    index: int
    status: Status
    key: str | None = None
    model: M | None = None
    record_id: int | None = None
    error: CloudOnexError | None = attrs.field(default=None, eq=False)
    resumed: bool = False

    @property
    def ok(self) -> bool:
        """Whether the record was created, updated or deleted."""
        return self.status in DONE


@attrs.frozen(kw_only=True)
class BulkProgress:
    """Where a job stands; passed to ``on_progress`` after every unit of work.

    ``eta_seconds`` accounts for the budget: records that do not fit in what is left
    of this window wait for the next ones.
    """

    done: int
    total: int | None
    succeeded: int
    failed: int
    unknown: int
    eta_seconds: float | None


@attrs.define
class BulkResult(Generic[M]):
    """Exactly one outcome per input record, in input order."""

    outcomes: list[Outcome[M]]

    @property
    def succeeded(self) -> list[Outcome[M]]:
        """The records created, updated or deleted."""
        return [o for o in self.outcomes if o.ok]

    @property
    def failed(self) -> list[Outcome[M]]:
        """The records the server certainly did not act on."""
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def unknown(self) -> list[Outcome[M]]:
        """The records that may or may not have been processed."""
        return [o for o in self.outcomes if o.status == "unknown"]

    def summary(self) -> str:
        """One line: how many records ended which way."""
        return (
            f"{len(self.outcomes)} records: {len(self.succeeded)} succeeded, "
            f"{len(self.failed)} failed, {len(self.unknown)} unknown"
        )


class _Stopped(Exception):
    """The job is stopping: this request must not be sent."""


@attrs.frozen
class Item:
    """One input record on its way: where it came from and what will be sent."""

    index: int
    key: str | None
    digest: str
    payload: dict[str, object]
    record_id: int | None
    source: object


def digest(payload: object) -> str:
    """A stable fingerprint of a record, to match a rerun's input to the journal."""
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def estimate_eta(
    requests_left: int,
    status: RateLimitStatus,
    *,
    now: float,
    period: float,
    rate: float | None,
    reserve: int,
) -> float:
    """Seconds until ``requests_left`` more requests are done, under the budget.

    ``rate`` is the job's observed requests per second (None before the first one);
    ``reserve`` is what each window of ``period`` seconds keeps back from bulk work.
    """
    fits_now = max(0, status.remaining - reserve)
    per_window = max(1, status.limit - reserve)
    pace = requests_left / rate if rate else 0.0
    if requests_left <= fits_now or status.reset_at is None:
        return pace
    to_reset = max(0.0, status.reset_at.timestamp() - now)
    later = requests_left - fits_now
    windows = math.ceil(later / per_window) - 1
    return to_reset + windows * period + (later - windows * per_window) / (rate or math.inf)


class Operation(Generic[M]):
    """What one bulk job does to a record; subclasses for create, update, delete."""

    name: str
    done: Status
    #: whether a record left ``unknown`` may be sent again without a lookup
    idempotent: bool

    def __init__(self, resource: Resource[M]) -> None:
        self.resource = resource

    def item(self, index: int, record: object, key: Callable[[object], object] | None) -> Item:
        """Turn one input value into an Item."""
        raise NotImplementedError

    async def one(self, item: Item) -> Outcome[M]:
        """Send one record; errors become outcomes."""
        raise NotImplementedError

    async def batch(self, items: Sequence[Item]) -> list[Outcome[M]] | None:
        """Send many records in one request, or return None if the server cannot."""
        return None

    def _key(self, record: object, key: Callable[[object], object] | None) -> str | None:
        return None if key is None else str(key(record))

    def _failure(self, item: Item, error: CloudOnexError) -> Outcome[M]:
        """The outcome of a request that raised."""
        status: Status
        if isinstance(error, CreatedWithoutIdError):
            # Created for certain, but the server did not name it: never send it again.
            return Outcome(item.index, "created", item.key, record_id=None, error=error)
        if isinstance(error, (UnsupportedError, ConfigurationError)):
            # Not offered, ignored, or not the API at all (an HTML 404): nothing was done.
            return Outcome(item.index, "failed", item.key, record_id=item.record_id, error=error)
        if isinstance(error, OutcomeUnknownError):
            status = "unknown"
        elif isinstance(error, TransportError):
            status = "unknown" if error.request_sent else "failed"
        elif isinstance(error, APIError) and error.status >= 500:
            status = "unknown"
        elif isinstance(error, NotFoundError) and self.name == "delete":
            # Deleting what is already gone leaves the state asked for.
            return Outcome(item.index, "deleted", item.key, record_id=item.record_id)
        elif isinstance(error, APIError):
            status = "failed"
        else:
            status = "unknown"
        return Outcome(item.index, status, item.key, record_id=item.record_id, error=error)


class CreateOperation(Operation[M]):
    """``bulk_create``: POST each record, or ``batch/<resource>`` chunks where offered."""

    name = "create"
    done: Status = "created"
    idempotent = False

    def item(self, index: int, record: object, key: Callable[[object], object] | None) -> Item:
        payload = self.resource._payload(record)  # type: ignore[arg-type]
        return Item(index, self._key(record, key), digest(payload), payload, None, record)

    async def one(self, item: Item) -> Outcome[M]:
        try:
            # No read-back on shipped servers: it would double the job's cost.
            model = await self.resource._create(item.payload, priority="bulk", read_back=False)
        except CloudOnexError as error:
            return self._failure(item, error)
        return Outcome(item.index, "created", item.key, model, model.id)

    def __init__(self, resource: Resource[M]) -> None:
        super().__init__(resource)
        self._probe = asyncio.Lock()

    async def batch(self, items: Sequence[Item]) -> list[Outcome[M]] | None:
        if (await self.resource._client.server_profile()).batch is False:
            return None
        support = self.resource._client._batch_support
        if support.get(self.resource.path) is None:
            # Until one answer shows whether the server has the batch path, ask once.
            async with self._probe:
                if support.get(self.resource.path) is None:
                    return await self._send_batch(items)
        if support[self.resource.path] is False:
            return None
        return await self._send_batch(items)

    async def _send_batch(self, items: Sequence[Item]) -> list[Outcome[M]] | None:
        resource = self.resource
        client = resource._client
        body = {resource.path: [item.payload for item in items]}
        try:
            envelope = await client._call(
                "POST", f"batch/{resource.path}", body=body, priority="bulk"
            )
        except UnsupportedError:
            client._batch_support[resource.path] = False
            return None
        except APIError as error:
            if error.status in (404, 405):
                client._batch_support[resource.path] = False
                return None
            if isinstance(error, ValidationError) and not error.errors:
                return None  # the batch as a whole was refused (size?): go one by one
            return [self._failure(item, error) for item in items]
        except CloudOnexError as error:
            return [self._failure(item, error) for item in items]
        client._batch_support[resource.path] = True
        return self._match(items, envelope.data)

    def _match(self, items: Sequence[Item], data: JSONValue) -> list[Outcome[M]]:
        """Pair the batch answer with its records, by ``index`` or by position.

        Anything that cannot be paired is ``unknown``: it may have been created.
        """
        entries = data if isinstance(data, list) else []
        by_index: dict[int, JSONValue] = {}
        if all(isinstance(e, dict) and isinstance(e.get("index"), int) for e in entries):
            by_index = {e["index"]: e for e in entries if isinstance(e, dict)}  # type: ignore[misc]
        elif len(entries) == len(items):
            by_index = dict(enumerate(entries))
        outcomes = []
        for position, item in enumerate(items):
            entry = by_index.get(position)
            outcomes.append(self._entry_outcome(item, entry))
        return outcomes

    def _entry_outcome(self, item: Item, entry: JSONValue) -> Outcome[M]:
        unmatched = OutcomeUnknownError(
            f"the batch answer for record {item.index} could not be read; look it up "
            "before sending it again"
        )
        if not isinstance(entry, dict):
            return Outcome(item.index, "unknown", item.key, error=unmatched)
        if entry.get("success") is False or entry.get("error") is True:
            errors = entry.get("errors")
            fields = {str(k): str(v) for k, v in errors.items()} if isinstance(errors, dict) else {}
            message = str(entry.get("message") or "rejected")
            error = ValidationError(message, status=400, errors=fields)
            return Outcome(item.index, "failed", item.key, error=error)
        record = entry.get("data")
        new_id = created_id(record) if isinstance(record, dict) else None
        new_id = new_id if new_id is not None else created_id(entry)
        if new_id is None:
            return Outcome(item.index, "unknown", item.key, error=unmatched)
        returned = record if isinstance(record, dict) else {}
        model = self.resource._to_model({**item.payload, **returned, "id": new_id})
        return Outcome(item.index, "created", item.key, model, new_id)


class UpdateOperation(Operation[M]):
    """``bulk_update``: PUT each (id, changes) pair; idempotent, so retried."""

    name = "update"
    done: Status = "updated"
    idempotent = True

    def item(self, index: int, record: object, key: Callable[[object], object] | None) -> Item:
        if isinstance(record, Model):
            record_id, changes = record.id, record
        elif isinstance(record, tuple) and len(record) == 2:
            record_id, changes = record
        else:
            raise ConfigurationError(
                "bulk_update takes (id, changes) pairs or models with an id, "
                f"got {type(record).__name__} at index {index}"
            )
        if record_id is None:
            raise ConfigurationError(f"the record at index {index} has no id to update")
        payload = self.resource._payload(changes)
        rid = int(str(record_id))
        return Item(index, self._key(record, key), digest([rid, payload]), payload, rid, record)

    async def one(self, item: Item) -> Outcome[M]:
        assert item.record_id is not None
        try:
            model = await self.resource._update(
                item.record_id, item.payload, priority="bulk", read_back=False
            )
        except CloudOnexError as error:
            return self._failure(item, error)
        return Outcome(item.index, "updated", item.key, model, item.record_id)


class DeleteOperation(Operation[M]):
    """``bulk_delete``: DELETE each id; idempotent, and deleting what is gone succeeds."""

    name = "delete"
    done: Status = "deleted"
    idempotent = True

    def item(self, index: int, record: object, key: Callable[[object], object] | None) -> Item:
        record_id = record.id if isinstance(record, Model) else record
        if isinstance(record_id, bool) or not isinstance(record_id, (int, str)):
            raise ConfigurationError(f"bulk_delete takes ids or models, got {record!r}")
        rid = int(str(record_id))
        return Item(index, self._key(record, key), digest(rid), {}, rid, record)

    async def one(self, item: Item) -> Outcome[M]:
        assert item.record_id is not None
        try:
            await self.resource.delete(item.record_id, priority="bulk")
        except CloudOnexError as error:
            return self._failure(item, error)
        return Outcome(item.index, "deleted", item.key, record_id=item.record_id)


Reconcile = Callable[[object], Awaitable["Model | None"]]
ProgressHook = Callable[[BulkProgress], object]


class BulkJob(Generic[M]):
    """One run of a bulk operation over an input stream; iterate it for outcomes."""

    def __init__(
        self,
        operation: Operation[M],
        records: Iterable[object] | AsyncIterable[object],
        *,
        key: Callable[[object], object] | None = None,
        concurrency: int = DEFAULT_BULK_CONCURRENCY,
        batch_size: int | None = None,
        journal: str | None = None,
        reconcile: Reconcile | None = None,
        retry_failed: bool = True,
        on_progress: ProgressHook | None = None,
        total: int | None = None,
    ) -> None:
        if concurrency < 1 or (batch_size is not None and batch_size < 1):
            raise ConfigurationError("concurrency and batch_size must be >= 1")
        self.operation = operation
        self.records = records
        self.key = key
        self.concurrency = concurrency
        self.batch_size = batch_size if operation.name == "create" else None
        self.journal = (
            Journal(journal, operation=operation.name, resource=operation.resource.path)
            if journal is not None
            else None
        )
        self.reconcile = reconcile
        self.retry_failed = retry_failed
        self.on_progress = on_progress
        if total is None and isinstance(records, Sequence):
            total = len(records)
        self.total = total
        self._counts = {"succeeded": 0, "failed": 0, "unknown": 0}
        self._requests = 0
        self._started = time.monotonic()
        # Bounded: a slow consumer holds the job back instead of outcomes piling up.
        self._outcomes: asyncio.Queue[Outcome[M] | None] = asyncio.Queue(
            maxsize=concurrency * (self.batch_size or 1) * 2
        )
        self._units: asyncio.Queue[list[Item] | None] = asyncio.Queue(maxsize=concurrency)
        self._recheck: list[Item] = []
        self._stopping = False
        self._not_sent: set[asyncio.Task[object]] = set()  # workers whose request has not left

    async def __aiter__(self) -> AsyncIterator[Outcome[M]]:
        main: asyncio.Future[object] = asyncio.ensure_future(self._run())
        try:
            while (outcome := await self._outcomes.get()) is not None:
                yield outcome
            await main  # raises what stopped the pipeline, if anything did
        finally:
            if not main.done():
                # Cancelled, or the caller stopped reading: send nothing more, but let the
                # requests in flight finish and be journaled.
                self.stop()
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._drain(main))

    async def _drain(self, main: asyncio.Future[object]) -> None:
        """Discard outcomes (they are journaled) until the pipeline has wound down."""
        while not main.done():
            getter: asyncio.Future[object] = asyncio.ensure_future(self._outcomes.get())
            await asyncio.wait({getter, main}, return_when=asyncio.FIRST_COMPLETED)
            getter.cancel()
            await asyncio.gather(getter, return_exceptions=True)
        await main

    # -- the pipeline -------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            previous = await asyncio.to_thread(self.journal.load) if self.journal else {}
            workers = [asyncio.ensure_future(self._work()) for _ in range(self.concurrency)]
            try:
                await self._feed(previous)
            finally:
                for _ in workers:
                    await self._units.put(None)
                await asyncio.gather(*workers)
            if self._recheck and not self._stopping:
                await self._resolve(self._recheck)
        finally:
            await self._outcomes.put(None)  # however it ended, the reader wakes

    async def _feed(self, previous: dict[int, JournalEntry]) -> None:
        chunk: list[Item] = []
        size = self.batch_size or 1
        index = 0
        async for record in _aiter(self.records):
            if self._stopping:
                return
            item = self.operation.item(index, record, self.key)
            index += 1
            entry = previous.get(item.index)
            if entry is not None and await self._settled(item, entry):
                continue
            chunk.append(item)
            if len(chunk) >= size:
                await self._units.put(chunk)
                chunk = []
        if chunk:
            await self._units.put(chunk)

    async def _settled(self, item: Item, entry: JournalEntry) -> bool:
        """Apply an earlier run's journal entry; return whether the record needs no send."""
        if entry.digest != item.digest:
            raise ConfigurationError(
                f"record {item.index} differs from the one in the journal: the input "
                "changed since the last run; use a new journal for new input"
            )
        if entry.state in DONE:
            model = None
            if self.operation.name != "delete" and entry.record_id is not None:
                model = self.operation.resource._to_model({**item.payload, "id": entry.record_id})
            await self._emit(
                Outcome(
                    item.index,
                    entry.state,  # type: ignore[arg-type]
                    item.key,
                    model,
                    entry.record_id,
                    resumed=True,
                )
            )
            return True
        if entry.state == "failed" and not self.retry_failed:
            error = CloudOnexError(entry.error or "failed in an earlier run")
            await self._emit(Outcome(item.index, "failed", item.key, error=error, resumed=True))
            return True
        if entry.state in ("sent", "unknown") and not self.operation.idempotent:
            self._recheck.append(item)  # may exist: look it up at the end, never resend blind
            return True
        return False

    async def _work(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        while (unit := await self._units.get()) is not None:
            if self._stopping:
                continue  # keep draining, so the feeder is never stuck
            self._not_sent.add(task)
            try:
                await self._send(unit)
            except (_Stopped, asyncio.CancelledError):
                if not self._stopping:
                    raise
            finally:
                self._not_sent.discard(task)

    async def _send(self, unit: list[Item]) -> None:
        outcomes = None
        if len(unit) > 1:
            outcomes = await self._with_hook(unit, self.operation.batch(unit))
        if outcomes is None:
            outcomes = []
            for item in unit:  # one by one (the batch path is missing, or a unit of one)
                outcomes.append(await self._with_hook([item], self.operation.one(item)))
        by_index = {item.index: item for item in unit}
        await self._journal_outcomes(outcomes, by_index)
        for outcome in outcomes:
            if outcome.status == "unknown" and not self.operation.idempotent and self.reconcile:
                self._recheck.append(by_index[outcome.index])
            else:
                await self._emit(outcome)

    async def _with_hook(self, items: list[Item], call: Awaitable[R]) -> R:
        """Run ``call`` with the journal's "sent" written just before the request leaves."""
        task = asyncio.current_task()

        async def before_send() -> None:
            if self._stopping:
                raise _Stopped
            if task is not None:  # from here on, the request goes out: let it finish
                self._not_sent.discard(task)
            self._requests += 1
            await self._journal(items, "sent")

        token = BEFORE_SEND.set(before_send)
        try:
            return await call
        finally:
            BEFORE_SEND.reset(token)

    def stop(self) -> None:
        """Send nothing more: callers still waiting for the budget give up now."""
        self._stopping = True
        for task in self._not_sent:
            task.cancel()

    async def _resolve(self, items: list[Item]) -> None:
        """Look up records that may exist; send the ones the hook says do not."""
        assert self.operation.name == "create"
        for item in items:
            try:
                found = await self.reconcile(item.source) if self.reconcile else None
            except CloudOnexError as error:  # the lookup failed: still unknown
                await self._emit(Outcome(item.index, "unknown", item.key, error=error))
                continue
            if found is None and self.reconcile is not None:
                outcome = await self._with_hook([item], self.operation.one(item))
                await self._journal_outcomes([outcome], {item.index: item})
            elif found is not None:
                model = (
                    found
                    if isinstance(found, self.operation.resource.model)
                    else (self.operation.resource._to_model(found))
                )
                outcome = Outcome(item.index, "created", item.key, model, model.id)
                await self._journal_outcomes([outcome], {item.index: item})
            else:
                outcome = Outcome(
                    item.index,
                    "unknown",
                    item.key,
                    error=OutcomeUnknownError(
                        "an earlier run sent this record but did not learn the outcome; "
                        "pass reconcile= to look it up"
                    ),
                    resumed=True,
                )
            await self._emit(outcome)

    # -- bookkeeping ---------------------------------------------------------------------

    async def _journal(self, items: Sequence[Item], state: str) -> None:
        if self.journal is not None:
            await self.journal.write(
                [JournalEntry(i.index, state, i.digest, i.key, i.record_id) for i in items]
            )

    async def _journal_outcomes(
        self, outcomes: Sequence[Outcome[M]], items: dict[int, Item]
    ) -> None:
        if self.journal is not None:
            await self.journal.write(
                [
                    JournalEntry(
                        o.index,
                        o.status,
                        items[o.index].digest,
                        o.key,
                        o.record_id,
                        o.error.message if o.error else None,
                    )
                    for o in outcomes
                ]
            )

    async def _emit(self, outcome: Outcome[M]) -> None:
        counter = "succeeded" if outcome.ok else outcome.status
        self._counts[counter] += 1
        await self._outcomes.put(outcome)
        if self.on_progress is not None:
            self.on_progress(self._progress())

    def _progress(self) -> BulkProgress:
        done = sum(self._counts.values())
        eta = None
        if self.total is not None:
            client = self.operation.resource._client
            left = max(0, self.total - done)
            per_request = self.batch_size or 1
            elapsed = time.monotonic() - self._started
            rate = self._requests / elapsed if self._requests and elapsed > 0 else None
            limiter = client.limiter
            status = client.rate_limit
            reserve = reserve_size(status.limit, limiter.bulk_reserve)
            eta = estimate_eta(
                math.ceil(left / per_request),
                status,
                now=limiter.clock.time(),
                period=limiter.rate_period,
                rate=rate,
                reserve=reserve,
            )
        return BulkProgress(done=done, total=self.total, eta_seconds=eta, **self._counts)


async def _aiter(records: Iterable[R] | AsyncIterable[R]) -> AsyncIterator[R]:
    if isinstance(records, AsyncIterable):
        async for record in records:
            yield record
    else:
        for record in records:
            yield record
