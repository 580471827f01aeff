"""Records in and out of files: CSV and JSON lines, read and written as they go."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Literal

import attrs

from .._convert import CONVERTER
from .._secret import MASK, Secret
from ..models import Model

Format = Literal["jsonl", "csv", "table"]


def format_of(path: str | Path, default: Format = "jsonl") -> Format:
    """The format a file's name asks for: ``.csv`` is CSV, ``.jsonl``/``.json`` JSON lines."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    return default


def read_records(path: str | Path) -> Iterator[dict[str, object]]:
    """Yield the records of a CSV or JSON-lines file, one at a time.

    CSV cells that are empty are left out (the server keeps its value), and so are
    columns whose name starts with ``_`` (such as the ``_error`` column of a failures
    file), so a failures file can be fixed and imported as it is. A value that is a
    masked secret (``********``, as an export writes a password hash) is left out too:
    the server keeps its secret, which the mask would otherwise replace.
    """
    if format_of(path) == "csv":
        with open(path, newline="", encoding="utf-8-sig") as handle:
            for row in csv.DictReader(handle):
                yield {
                    k: v
                    for k, v in row.items()
                    if k and not k.startswith("_") and v not in ("", MASK)
                }
        return
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as error:
                raise ValueError(f"{path}, line {number}: not JSON ({error})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}, line {number}: a record must be a JSON object")
            yield {k: v for k, v in record.items() if not k.startswith("_") and v != MASK}


def count_records(path: str | Path) -> int:
    """How many records a file holds (one cheap pass, for progress)."""
    return sum(1 for _ in read_records(path))


def as_row(record: Model | Mapping[str, object]) -> dict[str, object]:
    """A model or mapping as plain JSON-ready values (unknown fields included).

    Secrets (a password hash, a token) are shown masked: ``********``, or ``""`` for an
    empty one.
    """
    if isinstance(record, Model):
        row: dict[str, object] = CONVERTER.unstructure(record)
        fields = [f.name for f in attrs.fields(type(record)) if f.name != "extra"]
        ordered = {name: row[name] for name in fields if name in row}
        ordered.update({k: v for k, v in row.items() if k not in ordered})
        return {k: _masked(v) for k, v in ordered.items()}
    return {k: _masked(v) for k, v in record.items()}


def _masked(value: object) -> object:
    """``value`` with every Secret in it (nested too) as its masked text."""
    if isinstance(value, Secret):
        return str(value)
    if isinstance(value, Mapping):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_masked(v) for v in value]
    return value


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str, separators=(",", ":"))
    return str(value)


class RecordWriter:
    """Writes rows as they come, in one format, to a text stream."""

    def __init__(self, stream: IO[str], fmt: Format, columns: Iterable[str] = ()) -> None:
        self._stream = stream
        self._format = fmt
        self._columns = list(columns)
        self._csv: csv.DictWriter[str] | None = None
        self._pending: list[dict[str, object]] = []
        self._widths: list[int] = []

    def write(self, row: Mapping[str, object]) -> None:
        """Write one row (a table waits for a few rows to size its columns)."""
        if self._format == "jsonl":
            self._stream.write(json.dumps(row, default=str, ensure_ascii=False) + "\n")
        elif self._format == "csv":
            if self._csv is None:
                columns = self._columns or list(row)
                self._csv = csv.DictWriter(self._stream, columns, extrasaction="ignore")
                self._csv.writeheader()
            self._csv.writerow({k: _cell(v) for k, v in row.items()})
        else:
            self._pending.append(dict(row))
            if len(self._pending) >= 20:
                self._flush_table()
        self._stream.flush()

    def close(self) -> None:
        """Write what is still held (a short table)."""
        if self._format == "table":
            self._flush_table()
            self._stream.flush()

    def _flush_table(self) -> None:
        if not self._pending:
            return
        if not self._widths:
            self._columns = (
                self._columns
                or [
                    k for k in self._pending[0] if not isinstance(self._pending[0][k], (dict, list))
                ][:8]
            )
            self._widths = [
                min(30, max([len(c)] + [len(_cell(r.get(c))) for r in self._pending]))
                for c in self._columns
            ]
            self._line(self._columns)
            self._line(["-" * w for w in self._widths])
        for row in self._pending:
            self._line([_cell(row.get(c)) for c in self._columns])
        self._pending.clear()

    def _line(self, cells: list[str]) -> None:
        parts = []
        for cell, width in zip(cells, self._widths, strict=True):
            cell = cell.replace("\n", " ")
            cell = cell if len(cell) <= width else cell[: width - 1] + "…"
            parts.append(cell.ljust(width))
        self._stream.write("  ".join(parts).rstrip() + "\n")


def write_failures(source: str | Path, target: str | Path, errors: Mapping[int, str]) -> int:
    """Copy the failed records of ``source`` (by index) to ``target``, with their errors.

    The target has the source's format and an ``_error`` column (CSV) or key (JSON
    lines), which an import ignores: fix the records and import the file as it is.
    """
    fmt = format_of(source)
    written = 0
    rows = []
    for index, record in enumerate(read_records(source)):
        if index in errors:
            rows.append({**record, "_error": errors[index]})
    with open(target, "w", newline="", encoding="utf-8") as handle:
        if fmt == "csv":
            columns: list[str] = []
            for row in rows:
                columns += [k for k in row if k not in columns and k != "_error"]
            writer = RecordWriter(handle, "csv", [*columns, "_error"])
        else:
            writer = RecordWriter(handle, "jsonl")
        for row in rows:
            writer.write(row)
            written += 1
    return written
