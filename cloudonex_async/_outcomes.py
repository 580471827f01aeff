"""What a bulk job reports: one Outcome per record, the BulkResult, and BulkProgress.

Plain records, no behaviour: the job (``_bulk``) makes them, and ``BulkError`` carries
a ``BulkResult``.
"""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

import attrs

from ._error_base import CloudOnexError
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
            f"{len(self.outcomes)} records: {len(self.succeeded)} succeeded, "
            f"{len(self.failed)} failed, {len(self.unknown)} unknown"
        )
