"""Journals: a durable record of what a job sent and how each record ended.

A :class:`Journal` is two methods: ``load()`` what earlier runs recorded, and
``write(entries)`` new states, durably, before returning. A job writes a record's state
as ``sent`` just before its request leaves, then its outcome; a rerun after a crash
reads the last state of each record. Two backends:

- :class:`FileJournal`: append-only JSON lines, fsync'd (line one names the job; each
  later line is one record's state: ``{"i": index, "k": key, "d": digest, "s": state,
  "id": record id, "e": error, "f": field errors}``). Reading keeps the last state per
  index and ignores a cut-off last line, which is what a killed process leaves behind.
- :class:`RedisJournal`: the same entries in a Redis hash, for jobs whose machines lose
  their disk on restart (containers). Each write is one atomic ``HSET``; how durable it
  is depends on the server's persistence (``appendonly yes`` for every write).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import attrs

from .errors import ConfigurationError

if TYPE_CHECKING:
    from redis.asyncio import Redis

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
    errors: Mapping[str, str] | None = None

    def to_json(self) -> str:
        """One line of JSON."""
        fields = {"i": self.index, "s": self.state, "d": self.digest, "k": self.key}
        fields.update({"id": self.record_id, "e": self.error, "f": dict(self.errors or {})})
        return json.dumps(fields, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> JournalEntry | None:
        """Read one line; None if it is not an entry (a cut-off line, a blank one)."""
        try:
            raw = json.loads(text)
            errors = raw.get("f") or None
            return cls(
                index=int(raw["i"]),
                state=str(raw["s"]),
                digest=str(raw["d"]),
                key=raw.get("k"),
                record_id=raw.get("id"),
                error=raw.get("e"),
                errors={str(k): str(v) for k, v in errors.items()} if errors else None,
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


class Journal(Protocol):
    """Where a job's states are kept: what ``journal=`` takes, besides a file path."""

    async def load(self, job: Mapping[str, str]) -> dict[int, JournalEntry]:
        """Return the last state of each record earlier runs of ``job`` recorded.

        Raises:
            ConfigurationError: the journal belongs to another kind of job.
        """

    async def write(self, entries: list[JournalEntry]) -> None:
        """Record ``entries`` durably before returning."""


def _last_states(texts: Iterable[str | bytes]) -> dict[int, JournalEntry]:
    """Each record's last state, from entries in the order written (unreadable ones skipped)."""
    entries: dict[int, JournalEntry] = {}
    for text in texts:
        entry = JournalEntry.from_json(text)
        if entry is not None:
            entries[entry.index] = entry
    return entries


def _check_job(found: object, job: Mapping[str, str], where: str) -> None:
    if found != dict(job):
        raise ConfigurationError(
            f"{where} is not a journal of this job ({found!r}, expected {dict(job)!r}); "
            "use another journal"
        )


class FileJournal:
    """A job's journal in an append-only, fsync'd file. Writes go through a thread."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._header: dict[str, str] | None = None
        self._lock = asyncio.Lock()
        self._tail_checked = False

    def __repr__(self) -> str:
        return f"FileJournal({str(self.path)!r})"

    async def load(self, job: Mapping[str, str]) -> dict[int, JournalEntry]:
        """See :class:`Journal`."""
        self._header = {"format": FORMAT, **job}
        return await asyncio.to_thread(self._load, self._header)

    def _load(self, header: dict[str, str]) -> dict[int, JournalEntry]:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return {}
        with self.path.open("r", encoding="utf-8", errors="replace") as handle:
            lines = handle.read().split("\n")
        try:
            found = json.loads(lines[0])
        except ValueError:
            found = None
        _check_job(found, header, str(self.path))
        return _last_states(lines[1:])

    async def write(self, entries: list[JournalEntry]) -> None:
        """See :class:`Journal`: appended and fsync'd."""
        if not entries:
            return
        if self._header is None:
            raise ConfigurationError("load() the journal before writing to it")
        text = "".join(entry.to_json() + "\n" for entry in entries)
        async with self._lock:
            await asyncio.to_thread(self._append, text, self._header)

    def _append(self, text: str, header: dict[str, str]) -> None:
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
                handle.write(json.dumps(header) + "\n")
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())


class RedisJournal:
    """A job's journal in Redis: a hash of the last state per record, and the job's name.

    Args:
        redis: a ``redis.asyncio.Redis`` client (not closed by the journal), with or
            without ``decode_responses=True``.
        name: names this job's journal (for example ``"nightly-customers"``); a rerun
            passes the same name.
        prefix: the Redis key prefix.
        ttl_days: how long an untouched journal is kept.
    """

    def __init__(
        self,
        redis: Redis,
        name: str,
        *,
        prefix: str = "cloudonex_async:journal",
        ttl_days: float = 30.0,
    ) -> None:
        self._redis = redis
        self.key = f"{prefix}:{name}"
        self._ttl = int(ttl_days * 86400)
        self._loaded = False

    def __repr__(self) -> str:
        return f"RedisJournal({self.key!r})"

    async def load(self, job: Mapping[str, str]) -> dict[int, JournalEntry]:
        """See :class:`Journal`."""
        header = {"format": FORMAT, **job}
        raw = await self._redis.hgetall(self.key)
        # Field names are bytes, or str from a client made with decode_responses=True.
        fields = {k.decode() if isinstance(k, bytes) else str(k): v for k, v in raw.items()}
        if fields:
            found = fields.get("job")
            _check_job(json.loads(found) if found else None, header, self.key)
        else:
            await self._redis.hset(self.key, "job", json.dumps(header))
        self._loaded = True
        return _last_states(value for field, value in fields.items() if field != "job")

    async def write(self, entries: list[JournalEntry]) -> None:
        """See :class:`Journal`: one atomic HSET of every entry."""
        if not entries:
            return
        if not self._loaded:
            raise ConfigurationError("load() the journal before writing to it")
        mapping: dict[str | bytes, str] = {str(e.index): e.to_json() for e in entries}
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.key, mapping=mapping)  # type: ignore[arg-type]  # redis-py's Mapping is invariant
            pipe.expire(self.key, self._ttl)
            await pipe.execute()

    async def delete(self) -> None:
        """Forget this journal (once its job is done for good)."""
        await self._redis.delete(self.key)


def open_journal(journal: str | os.PathLike[str] | Journal | None) -> Journal | None:
    """A Journal from what ``journal=`` was given: a path becomes a FileJournal."""
    if journal is None:
        return None
    if isinstance(journal, (str, os.PathLike)):
        return FileJournal(journal)
    if not (hasattr(journal, "load") and hasattr(journal, "write")):
        raise ConfigurationError(
            f"journal must be a file path or a Journal (FileJournal, RedisJournal), "
            f"not {type(journal).__name__}"
        )
    return journal
