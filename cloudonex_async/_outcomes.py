"""What bulk jobs and syncs report: one outcome per record, the results, progress, plans.

Plain records, no behaviour: the jobs (``_bulk``, ``_sync``) make them, and
``BulkError``/``SyncError`` carry a result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Generic, Literal, TypeVar

import attrs

from ._error_base import CloudOnexError
from ._secret import masked_repr
from .models import Model

M = TypeVar("M", bound=Model)

Status = Literal["created", "updated", "deleted", "failed", "unknown"]
DONE: frozenset[str] = frozenset({"created", "updated", "deleted"})


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

    ``total`` is the number of records when known: from ``len()`` of the input, or from
    ``total=`` for a generator or async iterable (else None). ``eta_seconds`` accounts
    for the budget: records that do not fit in what is left of this window wait for the
    next ones (None without a total). ``budget_remaining`` is the budget left in this
    window as last seen.
    """

    done: int
    total: int | None
    succeeded: int
    failed: int
    unknown: int
    eta_seconds: float | None
    budget_remaining: int | None = None


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
            f"{_records(len(self.outcomes))}: {len(self.succeeded)} succeeded, "
            f"{len(self.failed)} failed, {len(self.unknown)} unknown{_resumed(self.outcomes)}"
        )


SyncStatus = Literal["created", "updated", "unchanged", "failed", "unknown"]
SYNC_DONE: frozenset[str] = frozenset({"created", "updated", "unchanged"})
Action = Literal["create", "update", "unchanged", "delete", "failed"]


@attrs.frozen
class SyncOutcome(Generic[M]):
    """How one input record of a sync ended.

    Attributes:
        index: its position in the input. key: its key, as given.
        status: ``created``, ``updated``, ``unchanged``, ``failed`` or ``unknown``.
        model: the record as it now is on the server, when known.
        record_id: its id, when known. changes: the fields sent (all of them for a
            create, only those that differed for an update).
        error: why it failed or is unknown. resumed: settled by an earlier run.
        same_key: the input positions of the other records with the same key (a
            record whose key is not unique fails, and so do they).
    """

    index: int
    status: SyncStatus
    key: str | None = None
    model: M | None = None
    record_id: int | None = None
    changes: Mapping[str, object] = attrs.field(factory=dict, repr=False)
    error: CloudOnexError | None = attrs.field(default=None, eq=False)
    resumed: bool = False
    same_key: tuple[int, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the server now holds the record as the input has it."""
        return self.status in SYNC_DONE


@attrs.frozen
class Deletion:
    """A remote record whose key was not in a ``delete_missing`` sync's input.

    ``status`` is ``deleted``, ``failed`` (the server certainly did not delete it),
    ``unknown`` (the request left and its answer was lost: it may be gone), or
    ``skipped`` (``max_deletes`` was reached).
    """

    key: str | None
    record_id: int | None
    status: Literal["deleted", "failed", "unknown", "skipped"]
    error: CloudOnexError | None = attrs.field(default=None, eq=False)


@attrs.frozen
class PlannedChange:
    """What a sync will do to one input record (or, for ``delete``, to a remote one)."""

    index: int | None
    key: str | None
    action: Action
    record_id: int | None = None
    changes: Mapping[str, object] = attrs.field(factory=dict, repr=masked_repr)
    reason: str | None = None


@attrs.frozen(kw_only=True)
class SyncPlan:
    """A sync's plan, as ``dry_run=True`` returns it: nothing was written.

    Attributes:
        strategy: ``"scan"`` or ``"lookup"``, as chosen. creates, updates, unchanged,
            deletes, failed: counts; settled: input records an earlier run with the
            same journal settled (no request). requests: the requests a real run will cost (the
            finding included); requests_spent: what this dry run cost. eta_seconds:
            when a real run would end, from the budget's remaining requests and Reset.
        changes: every planned change.
    """

    strategy: str
    creates: int
    updates: int
    unchanged: int
    deletes: int
    failed: int
    requests: int
    requests_spent: int
    eta_seconds: float
    changes: list[PlannedChange] = attrs.field(repr=False)
    settled: int = 0

    def summary(self) -> str:
        """One line: the plan and its cost."""
        settled = f", {self.settled} settled by an earlier run" if self.settled else ""
        return (
            f"{self.creates} to create, {self.updates} to update, {self.unchanged} unchanged, "
            f"{self.deletes} to delete, {self.failed} failed{settled}; about "
            f"{_plural(self.requests, 'request')} ({self.strategy}), done in about "
            f"{self.eta_seconds:.0f} s"
        )


@attrs.define
class SyncResult(Generic[M]):
    """Exactly one outcome per input record, in input order, and the deletions."""

    outcomes: list[SyncOutcome[M]]
    deletions: list[Deletion] = attrs.field(factory=list)
    strategy: str = "scan"
    requests: int = 0

    def count(self, status: str) -> int:
        """How many input records ended with ``status``."""
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def failed(self) -> list[SyncOutcome[M]]:
        """The records the server does not hold as the input has them, for certain."""
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def unknown(self) -> list[SyncOutcome[M]]:
        """The records whose outcome could not be learned."""
        return [o for o in self.outcomes if o.status == "unknown"]

    def summary(self) -> str:
        """One line: how many records ended which way."""
        deleted = sum(1 for d in self.deletions if d.status == "deleted")
        return (
            f"{_records(len(self.outcomes))}: {self.count('created')} created, "
            f"{self.count('updated')} updated, {self.count('unchanged')} unchanged, "
            f"{self.count('failed')} failed, {self.count('unknown')} unknown"
            f"{_resumed(self.outcomes)}; {deleted} deleted; {_plural(self.requests, 'request')}"
        )


def _records(count: int) -> str:
    return _plural(count, "record")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _resumed(outcomes: Sequence[Outcome[M] | SyncOutcome[M]]) -> str:
    """`` (2 of them settled by an earlier run)``, or "" when none was."""
    resumed = sum(1 for o in outcomes if o.resumed)
    return f" ({resumed} of them settled by an earlier run)" if resumed else ""
