"""The progress bar of long jobs: rich on a terminal, nothing on a pipe."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

from .._outcomes import BulkProgress


def duration(seconds: float | None) -> str:
    """``1h 05m``, ``4m 10s``, ``12s``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


class ProgressBar:
    """Shows a job's BulkProgress: done/total, outcome counts, budget left and the ETA.

    Drawn on stderr with rich when stderr is a terminal (and rich is installed, as the
    ``cli`` extra does); otherwise it draws nothing, so pipes and logs stay clean.
    Use it as a context manager and pass it as ``on_progress``.
    """

    def __init__(self, title: str, total: int | None, *, enabled: bool | None = None) -> None:
        self.title = title
        self.total = total
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> ProgressBar:
        if not self.enabled:
            return self
        try:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
        except ImportError:  # pragma: no cover - rich is in the cli extra
            self.enabled = False
            return self
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TextColumn("budget {task.fields[budget]}"),
            TextColumn("ETA {task.fields[eta]}"),
            console=Console(stderr=True),
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(
            self.title, total=self.total, counts="", budget="?", eta="?"
        )
        return self

    def __call__(self, progress: BulkProgress) -> None:
        if self._progress is None:
            return
        counts = f"ok {progress.succeeded}  failed {progress.failed}  unknown {progress.unknown}"
        budget = "?" if progress.budget_remaining is None else str(progress.budget_remaining)
        self._progress.update(
            self._task,
            completed=progress.done,
            total=progress.total or self.total,
            counts=counts,
            budget=budget,
            eta=duration(progress.eta_seconds),
        )

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
