"""The bulk journal: an append-only, fsync'd JSON-lines record of what a job sent and how it ended.

Line one names the job (operation and resource); every later line is one record's state:
``{"i": index, "k": key, "d": digest, "s": state, "id": record id}``. A state is
``sent`` (written and synced *before* the request goes out), then one of the
outcomes. Reading keeps the last state per index and ignores a cut-off last line,
which is what a process killed mid-write leaves behind.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from pathlib import Path

import attrs

from .errors import ConfigurationError

FORMAT = "cloudonex_async.journal/1"


@attrs.frozen
class JournalEntry:
    """The last known state of one input record."""

    index: int
    state: str
    digest: str
    key: str | None = None
    record_id: int | None = None
    error: str | None = None


class Journal:
    """One job's journal file. Writes go through a thread so fsync never blocks the loop."""

    def __init__(self, path: str | os.PathLike[str], *, operation: str, resource: str) -> None:
        self.path = Path(path)
        self.header = {"format": FORMAT, "operation": operation, "resource": resource}
        self._lock = asyncio.Lock()
        self._tail_checked = False

    def load(self) -> dict[int, JournalEntry]:
        """Read what earlier runs recorded (empty for a new file).

        Raises:
            ConfigurationError: the file belongs to another kind of job.
        """
        if not self.path.exists() or self.path.stat().st_size == 0:
            return {}
        entries: dict[int, JournalEntry] = {}
        with self.path.open("r", encoding="utf-8") as handle:
            lines = handle.read().split("\n")
        try:
            header = json.loads(lines[0])
        except ValueError:
            header = None
        if header != self.header:
            raise ConfigurationError(
                f"{self.path} is not a journal of this job ({header!r}, expected "
                f"{self.header!r}); use another journal path"
            )
        for line in lines[1:]:
            try:
                raw = json.loads(line)
            except ValueError:
                continue  # the cut-off line of a killed process, or a blank line
            if not isinstance(raw, Mapping):
                continue
            entry = JournalEntry(
                index=int(raw["i"]),
                state=str(raw["s"]),
                digest=str(raw["d"]),
                key=raw.get("k"),
                record_id=raw.get("id"),
                error=raw.get("e"),
            )
            entries[entry.index] = entry
        return entries

    async def write(self, entries: list[JournalEntry]) -> None:
        """Append ``entries`` and fsync them before returning."""
        if not entries:
            return
        lines = "".join(
            json.dumps(
                {
                    "i": e.index,
                    "s": e.state,
                    "d": e.digest,
                    "k": e.key,
                    "id": e.record_id,
                    "e": e.error,
                },
                separators=(",", ":"),
            )
            + "\n"
            for e in entries
        )
        async with self._lock:
            await asyncio.to_thread(self._append, lines)

    def _append(self, text: str) -> None:
        new = not self.path.exists() or self.path.stat().st_size == 0
        if not new and not self._tail_checked:
            # A killed writer may have left half a line: end it, so ours start clean.
            with self.path.open("rb") as handle:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    text = "\n" + text
        self._tail_checked = True
        with self.path.open("a", encoding="utf-8") as handle:
            if new:
                handle.write(json.dumps(self.header) + "\n")
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
