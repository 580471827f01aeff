"""The progress of long jobs on a terminal: a rich bar, or plain lines without rich."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TextIO

from .._outcomes import BulkProgress

#: Seconds between two plain progress lines (where rich is not installed).
PLAIN_INTERVAL = 2.0
RICH_HINT = 'pip install "cloudonex-async[cli]" for a progress bar'


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

    Only when ``stream`` (default: stderr) is a terminal, so pipes and logs stay clean.
    There it draws a rich bar when rich is installed (the ``cli`` extra does); without
    rich it prints a hint once at the start and then a plain line at most every
    :data:`PLAIN_INTERVAL` seconds of ``clock``. Use it as a context manager and pass it
    as ``on_progress``.
    """

    def __init__(
        self,
        title: str,
        total: int | None,
        *,
        enabled: bool | None = None,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.title = title
        self.total = total
        self.stream = sys.stderr if stream is None else stream
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.clock = clock
        self._progress: Any = None
        self._task: Any = None
        self._plain = False
        self._last_line = 0.0

    def __enter__(self) -> ProgressBar:
        if not self.enabled:
            return self
        try:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
        except ImportError:
            self._plain = True
            self._last_line = self.clock()
            size = "" if self.total is None else f" of {self.total} records"
            self._print(f"{self.title}{size}: progress every {PLAIN_INTERVAL:.0f} s ({RICH_HINT})")
            return self
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TextColumn("budget {task.fields[budget]}"),
            TextColumn("ETA {task.fields[eta]}"),
            console=Console(file=self.stream),
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(
            self.title, total=self.total, counts="", budget="?", eta="?"
        )
        return self

    def __call__(self, progress: BulkProgress) -> None:
        counts = f"ok {progress.succeeded}  failed {progress.failed}  unknown {progress.unknown}"
        budget = "?" if progress.budget_remaining is None else str(progress.budget_remaining)
        if self._plain:
            now = self.clock()
            if now - self._last_line < PLAIN_INTERVAL:
                return
            self._last_line = now
            total = progress.total or self.total
            done = f"{progress.done}/{total}" if total else f"{progress.done} done"
            share = f" ({100 * progress.done // total}%)" if total else ""
            eta = duration(progress.eta_seconds)
            self._print(f"{self.title}: {done}{share}  {counts}  budget {budget}  ETA {eta}")
            return
        if self._progress is None:
            return
        self._progress.update(
            self._task,
            completed=progress.done,
            total=progress.total or self.total,
            counts=counts,
            budget=budget,
            eta=duration(progress.eta_seconds),
        )

    def _print(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self._plain = False
