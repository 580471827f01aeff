"""Bulk jobs: fan records out under the budget and account for every one of them.

A job streams its input (never loading it whole), groups records into units (a batch
request, or one record each), and runs ``concurrency`` workers over the units. Each
record ends with exactly one :class:`Outcome`: done (``created``, ``updated`` or
``deleted``), ``failed`` (the server certainly did not act: a 4xx, an unsupported call,
or a request that never left) or ``unknown`` (the request may have been processed).

A job does not know resources or the client: it drives an :class:`Operation` (the
resource's create, update or delete, written in :mod:`cloudonex_async.resources`) and
reads the budget through a :class:`BudgetView`. Every send goes through an ``on_send``
callback that the client awaits once the attempt holds its budget token and
concurrency slot and just before the request leaves: that is where the journal writes
``sent`` (fsync'd), and where a stopping job refuses to send.

With ``journal=PATH``, a rerun after a crash skips what is done and never sends again
what may already exist: such records go to the ``reconcile=`` hook, which looks them
up. Only a record the hook says does not exist is sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Generic, Protocol, TypeVar

import attrs

from ._clock import Clock
from ._journal import Journal, JournalEntry, open_journal
from ._outcomes import DONE, BulkProgress, Outcome, Status
from ._ratelimit import RateLimitStatus
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

M = TypeVar("M", bound=Model)
R = TypeVar("R")

DEFAULT_BULK_CONCURRENCY = 8
DEFAULT_BATCH_SIZE = 100

OnSend = Callable[[], Awaitable[None]]
KeyFunction = Callable[[object], object]
Reconcile = Callable[[object], Awaitable["Model | None"]]
ProgressHook = Callable[[BulkProgress], object]


@attrs.frozen
class Item:
    """One input record on its way: where it came from and what will be sent."""

    index: int
    key: str | None
    digest: str
    payload: dict[str, object]
    record_id: int | None
    source: object


class Operation(Protocol[M]):
    """What a job does to each record: a resource's create, update or delete.

    Attributes:
        name: ``"create"``, ``"update"`` or ``"delete"`` (also the journal's job name).
        path: the resource's path, for the journal. idempotent: whether a record left
            ``unknown`` may be sent again without a lookup.
    """

    name: str
    path: str
    idempotent: bool

    def item(self, index: int, record: object, key: KeyFunction | None) -> Item:
        """Turn one input value into an Item (raises ConfigurationError if it cannot)."""

    async def one(self, item: Item, on_send: OnSend) -> Outcome[M]:
        """Send one record; errors become outcomes."""

    async def batch(self, items: Sequence[Item], on_send: OnSend) -> list[Outcome[M]] | None:
        """Send many records in one request, or return None if the server cannot."""

    def resumed(self, item: Item, record_id: int | None) -> M | None:
        """The model of a record an earlier run finished, from what the journal knows."""

    def found(self, item: Item, record: object) -> M:
        """The model of a record the ``reconcile`` hook found."""


class BudgetView(Protocol):
    """What a job reads of the client: the budget (for the ETA) and the clock."""

    @property
    def rate_limit(self) -> RateLimitStatus:
        """The budget as last seen."""

    clock: Clock


def digest(payload: object) -> str:
    """A stable fingerprint of a record, to match a rerun's input to the journal."""
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def failure_outcome(item: Item, error: CloudOnexError, operation: str) -> Outcome[M]:
    """The outcome of a record whose request raised ``error``."""
    status: Status
    if isinstance(error, CreatedWithoutIdError):
        # Created for certain, but the server did not name it: never send it again.
        return Outcome(item.index, "created", item.key, error=error)
    if isinstance(error, NotFoundError) and operation == "delete":
        # Deleting what is already gone leaves the state asked for.
        return Outcome(item.index, "deleted", item.key, record_id=item.record_id)
    if isinstance(error, (UnsupportedError, ConfigurationError)):
        # Not offered, ignored, or not the API at all (an HTML 404): nothing was done.
        status = "failed"
    elif isinstance(error, OutcomeUnknownError):
        status = "unknown"
    elif isinstance(error, TransportError):
        status = "unknown" if error.request_sent else "failed"
    elif isinstance(error, APIError):
        status = "unknown" if error.status >= 500 else "failed"
    else:
        status = "unknown"
    return Outcome(item.index, status, item.key, record_id=item.record_id, error=error)


def estimate_eta(
    requests_left: int, status: RateLimitStatus, *, now: float, rate: float | None
) -> float:
    """Seconds until ``requests_left`` more bulk requests (not yet sent) are done.

    ``rate`` is the job's observed requests per second (None before the first one).
    The window's length and the reserve bulk work leaves come from ``status``: the
    server's window once it has announced one. What fits in this window goes at the
    job's pace; if more is left, the job waits for the windows it needs, and each
    window's share goes out as it opens.
    """
    reserve, period = status.reserve, status.window_seconds
    fits_now = max(0, status.remaining - reserve)
    per_window = max(1, status.limit - reserve)
    pace = requests_left / rate if rate else 0.0
    if requests_left <= fits_now or status.reset_at is None:
        return pace
    to_reset = max(0.0, status.reset_at.timestamp() - now)
    windows = math.ceil((requests_left - fits_now) / per_window) - 1
    return to_reset + windows * period


class _Stopped(Exception):
    """The job is stopping: this request must not be sent."""


class BulkJob(Generic[M]):
    """One run of a bulk operation over an input stream; iterate it for outcomes."""

    def __init__(
        self,
        operation: Operation[M],
        records: Iterable[object] | AsyncIterable[object],
        *,
        budget: BudgetView,
        key: KeyFunction | None = None,
        concurrency: int = DEFAULT_BULK_CONCURRENCY,
        batch_size: int | None = None,
        journal: str | os.PathLike[str] | Journal | None = None,
        reconcile: Reconcile | None = None,
        retry_failed: bool = True,
        on_progress: ProgressHook | None = None,
        total: int | None = None,
    ) -> None:
        if concurrency < 1 or (batch_size is not None and batch_size < 1):
            raise ConfigurationError("concurrency and batch_size must be >= 1")
        self.operation = operation
        self.records = records
        self.budget = budget
        self.key = key
        self.concurrency = concurrency
        self.batch_size = batch_size if operation.name == "create" else None
        self.journal = open_journal(journal)
        self.job = {"operation": operation.name, "resource": operation.path}
        self.reconcile = reconcile
        self.retry_failed = retry_failed
        self.on_progress = on_progress
        if total is None and isinstance(records, Sequence):
            total = len(records)
        self.total = total
        self._counts = {"succeeded": 0, "failed": 0, "unknown": 0}
        self._requests = 0
        # The job's pace is measured over the time it has requests on the wire, so
        # waits for the budget do not make it look slow.
        self._sending = 0
        self._busy = 0.0
        self._busy_since = 0.0
        # Bounded: a slow consumer holds the job back instead of outcomes piling up.
        self._outcomes: asyncio.Queue[Outcome[M] | None] = asyncio.Queue(
            maxsize=concurrency * (self.batch_size or 1) * 2
        )
        self._units: asyncio.Queue[list[Item] | None] = asyncio.Queue(maxsize=concurrency)
        self._recheck: list[Item] = []
        self._stopping = False
        self._not_sent: set[asyncio.Task[object]] = set()  # workers whose request has not left
        self._in_flight: set[int] = set()  # records whose request left, outcome not yet out

    @property
    def requests(self) -> int:
        """The requests this job has sent so far (every attempt counts)."""
        return self._requests

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
            previous = await self.journal.load(self.job) if self.journal else {}
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
        async for record in each(self.records):
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
            model = self.operation.resumed(item, entry.record_id)
            state: Status = entry.state  # type: ignore[assignment]
            await self._emit(
                Outcome(item.index, state, item.key, model, entry.record_id, resumed=True)
            )
            return True
        if entry.state == "failed" and not self.retry_failed:
            message = entry.error or "failed in an earlier run"
            error: CloudOnexError = (
                ValidationError(message, status=0, errors=entry.errors)
                if entry.errors
                else CloudOnexError(message)
            )
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
                await self._send(unit, task)
            except (_Stopped, asyncio.CancelledError):
                if not self._stopping:
                    raise
            finally:
                self._not_sent.discard(task)

    async def _send(self, unit: list[Item], task: asyncio.Task[object]) -> None:
        outcomes = None
        if len(unit) > 1:
            outcomes = await self._attempt(
                unit, task, lambda send: self.operation.batch(unit, send)
            )
        if outcomes is None:
            outcomes = []
            for item in unit:  # one by one (the batch path is missing, or a unit of one)
                outcomes.append(await self._one(item, task))
        by_index = {item.index: item for item in unit}
        await self._journal_outcomes(outcomes, by_index)
        for outcome in outcomes:
            if outcome.status == "unknown" and not self.operation.idempotent and self.reconcile:
                self._recheck.append(by_index[outcome.index])
            else:
                await self._emit(outcome)

    async def _one(self, item: Item, task: asyncio.Task[object] | None) -> Outcome[M]:
        return await self._attempt([item], task, lambda send: self.operation.one(item, send))

    async def _attempt(
        self,
        items: Sequence[Item],
        task: asyncio.Task[object] | None,
        call: Callable[[OnSend], Awaitable[R]],
    ) -> R:
        """Run ``call`` with the ``on_send`` callback for ``items``.

        The client awaits the callback just before each attempt leaves: a stopping job
        refuses to send there, and the journal writes ``sent`` (fsync'd).
        """
        left = False

        async def on_send() -> None:
            nonlocal left
            if self._stopping:
                raise _Stopped
            if task is not None:  # from here on, the request goes out: let it finish
                self._not_sent.discard(task)
            self._requests += 1
            if not left:
                left = True
                self._in_flight.update(item.index for item in items)
                if self._sending == 0:
                    self._busy_since = self.budget.clock.time()
                self._sending += 1
            await self._journal(items, "sent")

        try:
            return await call(on_send)
        finally:
            if left:
                self._sending -= 1
                if self._sending == 0:
                    self._busy += self.budget.clock.time() - self._busy_since

    def stop(self) -> None:
        """Send nothing more: callers still waiting for the budget give up now."""
        self._stopping = True
        for task in self._not_sent:
            task.cancel()

    async def _resolve(self, items: list[Item]) -> None:
        """Look up records that may exist; send the ones the hook says do not.

        The lookups run ``concurrency`` at a time (under the budget, as every call);
        the records found missing go out again in batches, as the first time.
        """
        if self.reconcile is None:
            for item in items:
                await self._emit(
                    Outcome(
                        item.index,
                        "unknown",
                        item.key,
                        error=OutcomeUnknownError(
                            "an earlier run sent this record but did not learn the outcome; "
                            "pass reconcile= to look it up"
                        ),
                        resumed=True,
                    )
                )
            return
        reconcile = self.reconcile
        lanes = asyncio.Semaphore(self.concurrency)

        async def look_up(item: Item) -> tuple[Item, object, CloudOnexError | None]:
            async with lanes:
                try:
                    return item, await reconcile(item.source), None
                except CloudOnexError as error:  # the lookup failed: still unknown
                    return item, None, error

        missing: list[Item] = []
        for item, found, error in await asyncio.gather(*(look_up(i) for i in items)):
            if error is not None:
                await self._emit(Outcome(item.index, "unknown", item.key, error=error))
            elif found is None:
                missing.append(item)
            else:
                model = self.operation.found(item, found)
                outcome: Outcome[M] = Outcome(item.index, "created", item.key, model, model.id)
                await self._journal_outcomes([outcome], {item.index: item})
                await self._emit(outcome)
        size = self.batch_size or 1
        units = [missing[n : n + size] for n in range(0, len(missing), size)]

        async def resend(unit: list[Item]) -> None:
            async with lanes:
                outcomes = None
                if len(unit) > 1:
                    outcomes = await self._attempt(
                        unit, None, lambda send: self.operation.batch(unit, send)
                    )
                if outcomes is None:
                    outcomes = [await self._one(item, None) for item in unit]
                await self._journal_outcomes(outcomes, {item.index: item for item in unit})
                for outcome in outcomes:
                    await self._emit(outcome)

        await asyncio.gather(*(resend(unit) for unit in units))

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
                        # Field errors too: "Validation failed" alone helps nobody fix it.
                        dict(o.error.errors) if isinstance(o.error, APIError) else None,
                    )
                    for o in outcomes
                ]
            )

    async def _emit(self, outcome: Outcome[M]) -> None:
        self._in_flight.discard(outcome.index)
        counter = "succeeded" if outcome.ok else outcome.status
        self._counts[counter] += 1
        await self._outcomes.put(outcome)
        if self.on_progress is not None:
            self.on_progress(self._progress())

    def _progress(self) -> BulkProgress:
        done = sum(self._counts.values())
        eta = None
        status = self.budget.rate_limit
        if self.total is not None:
            # Records on their way have spent their budget already: they are not "left".
            left = max(0, self.total - done - len(self._in_flight))
            now = self.budget.clock.time()
            busy = self._busy + (now - self._busy_since if self._sending else 0.0)
            rate = self._requests / busy if self._requests and busy > 0 else None
            eta = estimate_eta(math.ceil(left / (self.batch_size or 1)), status, now=now, rate=rate)
        return BulkProgress(
            done=done,
            total=self.total,
            eta_seconds=eta,
            budget_remaining=status.remaining,
            **self._counts,
        )


async def each(records: Iterable[R] | AsyncIterable[R]) -> AsyncIterator[R]:
    """Iterate an iterable or an async iterable alike."""
    if isinstance(records, AsyncIterable):
        async for record in records:
            yield record
    else:
        for record in records:
            yield record
