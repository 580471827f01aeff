"""Bulk jobs: fan records out under the budget and account for every one of them.

A job streams its input (never loading it whole), groups records into units (a batch
request, or one record each), and runs ``concurrency`` workers over the units. Each
record ends with exactly one :class:`Outcome`: done (``created``, ``updated`` or
``deleted``), ``failed`` (the server certainly did not act: the request never left,
or the server refused it) or ``unknown`` (the request left and may have been acted
on). A record the job cannot even read (not a mapping, a value that cannot be sent)
is ``failed`` at once, and the job goes on.

The feeder, the workers and every lookup of a job run in one task group: an error
from the caller's ``on_progress`` hook or from the journal ends the job with that
error, and cancelling the job cancels all of it. Nothing is left running either way.
Stopped early (cancelled, or the caller stops reading), the job sends nothing more
and gives requests already on the wire a moment to finish and be journaled.

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
import inspect
import json
import logging
import math
import os
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from typing import Final, Generic, Protocol, TypeVar, cast

import attrs

from ._clock import Clock
from ._journal import Journal, JournalEntry, open_journal
from ._outcomes import DONE, BulkProgress, Outcome, Status
from ._ratelimit import RateLimitStatus
from ._tasks import task_group
from .errors import (
    APIError,
    CloudOnexError,
    ConfigurationError,
    CreatedWithoutIdError,
    InputChangedError,
    NotFoundError,
    OutcomeUnknownError,
    RouteNotFoundError,
    TransportError,
    UnsupportedError,
    ValidationError,
)
from .models import Model

M = TypeVar("M", bound=Model)
R = TypeVar("R")

DEFAULT_BULK_CONCURRENCY = 8
DEFAULT_BATCH_SIZE = 100
#: Seconds a stopped job gives the requests already on the wire to finish.
STOP_GRACE: Final = 0.5

logger = logging.getLogger("cloudonex_async")

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
            ``unknown`` may be sent again without a lookup. batching: whether the
            server takes many records in one request (None until one answer shows).
    """

    name: str
    path: str
    idempotent: bool

    @property
    def batching(self) -> bool | None:
        """Whether the server has a batch path for this operation (None: not known yet)."""

    def item(self, index: int, record: object, key: KeyFunction | None) -> Item:
        """Turn one input value into an Item.

        Raises:
            ValidationError: the value is not a record this operation can send.
        """

    async def one(self, item: Item, on_send: OnSend) -> Outcome[M]:
        """Send one record and return its outcome, or raise the request's error."""

    async def batch(self, items: Sequence[Item], on_send: OnSend) -> list[Outcome[M]] | None:
        """Send many records in one request; None if the server cannot take them so.

        Raises the request's error when the whole batch failed.
        """

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
    text = json.dumps(_text_keys(payload), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _text_keys(value: object) -> object:
    """``value`` with every mapping's keys as text (keys of mixed types cannot be sorted)."""
    if isinstance(value, Mapping):
        return {str(k): _text_keys(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_text_keys(v) for v in value]
    return value


def failure_outcome(item: Item, error: CloudOnexError, operation: str, *, sent: bool) -> Outcome[M]:
    """The outcome of a record whose request raised ``error``.

    ``sent`` is whether an attempt got as far as leaving. ``failed`` only where the
    server certainly did not act: nothing left, the server refused (a 4xx, a legacy
    failure, an ignored or unknown call), or the web server has no API there. Anything
    else that went wrong once the request left is ``unknown``.
    """
    status: Status
    if isinstance(error, CreatedWithoutIdError):
        # Created for certain, but the server did not name it: never send it again.
        return Outcome(item.index, "created", item.key, error=error)
    if isinstance(error, NotFoundError) and operation == "delete":
        # Deleting what is already gone leaves the state asked for.
        return Outcome(item.index, "deleted", item.key, record_id=item.record_id)
    if not sent or isinstance(error, (UnsupportedError, RouteNotFoundError)):
        status = "failed"  # never left, or reached no API that acts (an HTML 404 page)
    elif isinstance(error, TransportError):
        status = "unknown" if error.request_sent else "failed"
    elif isinstance(error, APIError):
        status = "unknown" if error.status >= 500 else "failed"
    else:
        status = "unknown"  # an answer the client could not make sense of
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
    """The job is stopping: this request must not be sent (and the record is dropped)."""


#: The journal state of records whose batch the server refused as a whole: nothing was
#: acted on, so a rerun sends them (``sent`` would make it look them up first).
UNSENT: Final = "unsent"


class _NotSent(Exception):
    """The job halted after a configuration error: this record is not sent."""


_END: Final = object()  # the job's task is over
_FAILED: Final = object()  # the caller's hook or the journal failed: the job stops


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
        if on_progress is not None and not callable(on_progress):
            raise ConfigurationError("on_progress must be a callable that takes a BulkProgress")
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
        # Outcomes wait here for the reader; ``_room`` bounds how many, so a slow
        # reader holds the job back instead of outcomes piling up.
        self._outcomes: asyncio.Queue[object] = asyncio.Queue()
        self._room = asyncio.Semaphore(concurrency * (self.batch_size or 1) * 2)
        self._units: asyncio.Queue[list[Item] | None] = asyncio.Queue(maxsize=concurrency)
        # Requests of this job on the wire or waiting for the budget, at most ``concurrency``.
        self._lanes = asyncio.Semaphore(concurrency)
        self._recheck: list[Item] = []
        self._stopping = False
        self._error: Exception | None = None  # the hook's or the journal's: ends the job
        self._halted: CloudOnexError | None = None
        self._in_flight: set[int] = set()  # records whose request left, outcome not yet out

    @property
    def requests(self) -> int:
        """The requests this job has sent so far (every attempt counts)."""
        return self._requests

    async def __aiter__(self) -> AsyncGenerator[Outcome[M], None]:
        main: asyncio.Task[None] = asyncio.ensure_future(self._run())
        main.add_done_callback(lambda _: self._outcomes.put_nowait(_END))
        try:
            while (outcome := await self._outcomes.get()) not in (_END, _FAILED):
                self._room.release()
                yield cast("Outcome[M]", outcome)
        finally:
            if not main.done():
                await self._wind_down(main)
            elif not main.cancelled():
                main.exception()  # retrieved, however the reader left
        if self._error is not None:
            raise self._error
        if not main.cancelled() and main.exception() is not None:
            raise main.exception()  # type: ignore[misc]

    def _fail(self, error: Exception) -> None:
        """The caller's hook or the journal failed: send nothing more, end with ``error``."""
        if self._error is None and not self._stopping:
            self._error = error
            self._outcomes.put_nowait(_FAILED)
        else:  # the job is ending already: this one is not raised, so say it here
            logger.warning("while the bulk job was stopping: %r", error)
        self._stopping = True

    async def _wind_down(self, main: asyncio.Task[None]) -> None:
        """Stop sending; let requests on the wire finish for a moment; then cancel the rest."""
        self._stopping = True
        for _ in range(self.concurrency + 1):
            self._room.release()  # wake any worker waiting to hand an outcome over
        try:
            await asyncio.wait({main}, timeout=STOP_GRACE)
        finally:
            main.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.shield(main)

    # -- the pipeline -------------------------------------------------------------------

    async def _run(self) -> None:
        previous = await self.journal.load(self.job) if self.journal else {}
        async with task_group() as group:
            for _ in range(self.concurrency):
                group.create_task(self._work())
            await self._feed(previous)
            for _ in range(self.concurrency):
                await self._units.put(None)
        if self._recheck and not self._stopping:
            await self._resolve(self._recheck)

    async def _feed(self, previous: dict[int, JournalEntry]) -> None:
        # What an earlier run sent (or may have): a record with that content is never
        # sent again from another place in the input.
        taken = {entry.digest for entry in previous.values() if entry.state != "failed"}
        chunk: list[Item] = []
        index = 0
        async for record in each(self.records):
            if self._stopping:
                return
            number, index = index, index + 1
            try:
                item = self.operation.item(number, record, self.key)
            except CloudOnexError as error:  # a record that cannot be sent: failed, go on
                await self._emit(Outcome(number, "failed", error=error))
                continue
            except (TypeError, ValueError) as error:  # one the checks did not foresee
                refused = ValidationError(
                    f"this record cannot be sent: {error}; nothing was sent", status=0
                )
                refused.__cause__ = error
                await self._emit(Outcome(number, "failed", error=refused))
                continue
            entry = previous.get(item.index)
            if entry is None and item.digest in taken:
                raise self._changed(item, "it was sent from another place by an earlier run")
            if entry is not None and await self._settled(item, entry, taken):
                continue
            chunk.append(item)
            if len(chunk) >= self._unit_size():
                await self._units.put(chunk)
                chunk = []
        if chunk:
            await self._units.put(chunk)

    def _unit_size(self) -> int:
        """Records per unit: a batch, or one where the server has no batch path."""
        if not self.batch_size or self.operation.batching is False:
            return 1
        return self.batch_size

    async def _settled(self, item: Item, entry: JournalEntry, taken: set[str]) -> bool:
        """Apply an earlier run's journal entry; return whether the record needs no send.

        A record that failed (never created) and has been fixed in place is sent as it
        is now, unless its content is one an earlier run sent from elsewhere (a line
        removed above it shifts the rest).
        """
        if entry.digest != item.digest:
            if entry.state == "failed" and item.digest not in taken:
                return False
            raise self._changed(item, f"an earlier run with this journal left it {entry.state}")

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

    @staticmethod
    def _changed(item: Item, why: str) -> InputChangedError:
        return InputChangedError(
            f"the input record at index {item.index} has changed since {why}: sending it "
            "could store it twice. To change records that exist, use sync(); for "
            "different input, use a new journal",
            index=item.index,
        )

    async def _work(self) -> None:
        while (unit := await self._units.get()) is not None:
            if not self._stopping:  # else keep draining, so the feeder is never stuck
                await self._send(unit)

    async def _send(self, unit: list[Item], *, final: bool = False) -> None:
        """Send one unit and hand its outcomes on (``final``: no recheck after this).

        A record the job stops before sending is dropped: it has no outcome, and a
        rerun sends it. Without a batch path, the unit's records go out on their own,
        ``concurrency`` at a time with the rest of the job.
        """
        try:
            if len(unit) > 1 and self.operation.batching is not False:
                async with self._lanes:
                    outcomes = await self._batch(unit)
                if outcomes is not None:
                    await self._finish(outcomes, unit, final=final)
                    return
                await self._journal(unit, UNSENT)  # refused as a whole: nothing was done
            if len(unit) == 1:
                async with self._lanes:
                    outcome = await self._one(unit[0])
                await self._finish([outcome], unit, final=final)
                return
        except _Stopped:
            return
        async with task_group() as group:
            for item in unit:
                group.create_task(self._send([item], final=final))

    async def _one(self, item: Item) -> Outcome[M]:
        async def send(on_send: OnSend) -> list[Outcome[M]]:
            return [await self.operation.one(item, on_send)]

        outcomes = await self._attempt([item], send)
        assert outcomes is not None
        return outcomes[0]

    async def _batch(self, unit: list[Item]) -> list[Outcome[M]] | None:
        return await self._attempt(unit, lambda on_send: self.operation.batch(unit, on_send))

    async def _attempt(
        self,
        items: Sequence[Item],
        call: Callable[[OnSend], Awaitable[list[Outcome[M]] | None]],
    ) -> list[Outcome[M]] | None:
        """Run ``call`` (one request for ``items``); its error becomes their outcomes."""
        flight = _Flight(items)
        try:
            return await call(self._on_send(flight))
        except _NotSent:  # refused before a retry: an earlier attempt may have left
            status: Status = "unknown" if flight.left else "failed"
            return [Outcome(i.index, status, i.key, error=self._not_sent()) for i in items]
        except CloudOnexError as error:
            self._halt_on(error, flight.left)
            name = self.operation.name
            return [failure_outcome(i, error, name, sent=flight.left) for i in items]
        finally:
            self._land(flight)

    def _on_send(self, flight: _Flight) -> OnSend:
        """The callback the client awaits just before each attempt of ``flight`` leaves."""

        async def on_send() -> None:
            if self._stopping:
                raise _Stopped
            if self._halted is not None:
                raise _NotSent
            self._requests += 1
            await self._journal(flight.items, "sent")
            if not flight.left:
                flight.left = True
                self._in_flight.update(item.index for item in flight.items)
                if self._sending == 0:
                    self._busy_since = self.budget.clock.time()
                self._sending += 1

        return on_send

    def _land(self, flight: _Flight) -> None:
        """The attempt is over: count the time it spent on the wire."""
        if flight.left:
            self._sending -= 1
            if self._sending == 0:
                self._busy += self.budget.clock.time() - self._busy_since

    def _halt_on(self, error: CloudOnexError, sent: bool) -> None:
        """After a configuration error, stop sending: every other request would fare the same.

        (A JSON body to shipped code creates a record without its fields, each time.)
        """
        if sent and isinstance(error, ConfigurationError) and self._halted is None:
            self._halted = error

    def _not_sent(self) -> _NotSentError:
        assert self._halted is not None
        return _NotSentError(
            f"not sent: the job stopped sending after this error: {self._halted.message}"
        )

    async def _finish(
        self, outcomes: Sequence[Outcome[M]], items: Sequence[Item], *, final: bool
    ) -> None:
        """Journal ``outcomes``, then hand them on (unknown creates go to ``reconcile``)."""
        by_index = {item.index: item for item in items}
        attempted = [o for o in outcomes if not (o.status == "failed" and _never_sent(o))]
        await self._journal_outcomes(attempted, by_index)
        for outcome in outcomes:
            recheck = outcome.status == "unknown" and not self.operation.idempotent
            if recheck and self.reconcile is not None and not final:
                self._recheck.append(by_index[outcome.index])
            else:
                await self._emit(outcome)

    async def _resolve(self, items: list[Item]) -> None:
        """Look up records that may exist; send the ones the hook says do not.

        The lookups run ``concurrency`` at a time (under the budget, as every call);
        the records found missing go out again in batches, as the first time.
        """
        reconcile = self.reconcile
        if reconcile is None:
            for item in items:
                error = OutcomeUnknownError(
                    "an earlier run sent this record but did not learn the outcome; "
                    "pass reconcile= to look it up"
                )
                await self._emit(
                    Outcome(item.index, "unknown", item.key, error=error, resumed=True)
                )
            return
        missing: list[Item] = []

        async def look_up(item: Item) -> None:
            async with self._lanes:
                try:
                    found = await reconcile(item.source)
                except CloudOnexError as error:  # the lookup failed: still unknown
                    await self._emit(Outcome(item.index, "unknown", item.key, error=error))
                    return
                except Exception as error:  # a bug in the caller's hook: still unknown
                    logger.warning("reconcile= raised for record %d", item.index, exc_info=True)
                    unknown = OutcomeUnknownError(
                        f"reconcile= raised {type(error).__name__} looking this record up: "
                        f"{error}; it may or may not exist"
                    )
                    unknown.__cause__ = error
                    await self._emit(Outcome(item.index, "unknown", item.key, error=unknown))
                    return
            if found is None:
                missing.append(item)
                return
            model = self.operation.found(item, found)
            outcome: Outcome[M] = Outcome(item.index, "created", item.key, model, model.id)
            try:
                await self._finish([outcome], [item], final=True)
            except _Stopped:
                pass  # the journal failed: the job is ending

        async with task_group() as group:
            for item in items:
                group.create_task(look_up(item))
        missing.sort(key=lambda item: item.index)
        size = self._unit_size()
        async with task_group() as group:
            for n in range(0, len(missing), size):
                group.create_task(self._send(missing[n : n + size], final=True))

    # -- bookkeeping ---------------------------------------------------------------------

    async def _journal(self, items: Sequence[Item], state: str) -> None:
        if self.journal is not None:
            entries = [JournalEntry(i.index, state, i.digest, i.key, i.record_id) for i in items]
            await self._write(entries)

    async def _journal_outcomes(
        self, outcomes: Sequence[Outcome[M]], items: dict[int, Item]
    ) -> None:
        if self.journal is not None and outcomes:
            await self._write(
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

    async def _write(self, entries: list[JournalEntry]) -> None:
        assert self.journal is not None
        try:
            await self.journal.write(entries)
        except Exception as error:  # a full disk, a lost Redis: the job cannot go on
            self._fail(error)
            raise _Stopped from error

    async def _emit(self, outcome: Outcome[M]) -> None:
        self._in_flight.discard(outcome.index)
        counter = "succeeded" if outcome.ok else outcome.status
        self._counts[counter] += 1
        if self._stopping:
            return  # nobody reads any more; the journal has what matters
        await self._room.acquire()
        self._outcomes.put_nowait(outcome)
        if self.on_progress is not None:
            try:
                await call_hook(self.on_progress, self._progress())
            except Exception as error:  # the caller's bug: the job ends with it
                self._fail(error)

    def _progress(self) -> BulkProgress:
        done = sum(self._counts.values())
        eta = None
        status = self.budget.rate_limit
        if self.total is not None:
            now = self.budget.clock.time()
            busy = self._busy + (now - self._busy_since if self._sending else 0.0)
            rate = None  # requests per second on the wire: unknown before the first one
            if self._requests:
                rate = self._requests / busy if busy > 0 else math.inf
            # Records on their way have spent their budget already: they are not "left".
            left = max(0, self.total - done - len(self._in_flight))
            per_request = self._unit_size()
            eta = estimate_eta(math.ceil(left / per_request), status, now=now, rate=rate)
            if done < self.total:
                # Records remain (on the wire, if nowhere else): at least one request's
                # time; None while nothing says how long that is.
                eta = max(eta, 1 / rate) if rate is not None else (eta or None)
        return BulkProgress(
            done=done,
            total=self.total,
            eta_seconds=eta,
            budget_remaining=status.remaining,
            **self._counts,
        )


class _NotSentError(ConfigurationError):
    """The error of a record a halted job never sent (not journaled: it has no state)."""


def _never_sent(outcome: Outcome[M]) -> bool:
    return isinstance(outcome.error, _NotSentError)


@attrs.define
class _Flight:
    """One attempt to send some records: whether a request of it has left."""

    items: Sequence[Item]
    left: bool = False


def key_of(key: KeyFunction, record: object, what: str) -> object:
    """The caller's ``key=`` function applied to ``record`` (``what`` names it).

    Raises:
        ValidationError: the function raised on this record (which is not sent).
    """
    try:
        return key(record)
    except Exception as error:
        raise ValidationError(
            f"{what}: key= raised {type(error).__name__}: {error}; nothing was sent",
            status=0,
            errors={"key": str(error) or type(error).__name__},
        ) from error


async def call_hook(hook: Callable[[R], object], value: R) -> None:
    """Call a caller's hook with ``value``; await it if it is a coroutine function."""
    result = hook(value)
    if inspect.isawaitable(result):
        await result


async def each(records: Iterable[R] | AsyncIterable[R]) -> AsyncIterator[R]:
    """Iterate an iterable or an async iterable alike."""
    if isinstance(records, AsyncIterable):
        async for record in records:
            yield record
    else:
        for record in records:
            yield record
