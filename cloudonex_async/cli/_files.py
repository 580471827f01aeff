"""Records in and out of files: CSV and JSON lines, read and written as they go."""

from __future__ import annotations

import csv
import json
import tempfile
from collections.abc import Collection, Iterable, Iterator, Mapping
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
    for _, record in read_numbered(path):
        yield record


def read_numbered(path: str | Path) -> Iterator[tuple[int, dict[str, object]]]:
    """Yield ``(line, record)`` for each record of a file, as :func:`read_records` reads them.

    ``line`` is the line of the file where the record starts, counted from 1 as an
    editor does: in a CSV file the header is line 1, so the first record is line 2
    unless a quoted cell spans lines; blank lines, and rows of nothing but separators
    (``,,``, as spreadsheets write at the end), are counted and skipped. A byte order
    mark at the start is ignored, in CSV and JSON lines alike.
    """
    if format_of(path) == "csv":
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None) or []
            start = reader.line_num + 1  # line_num: the line where the last row read ended
            for row in reader:
                if any(cell.strip() for cell in row):  # not a blank line, nor ",,"
                    # As csv.DictReader: a short row's missing cells are None, extras dropped.
                    cells: dict[str, str | None] = dict.fromkeys(header)
                    cells.update(zip(header, row, strict=False))
                    kept = {k: v for k, v in cells.items() if k and not k.startswith("_")}
                    yield start, {k: v for k, v in kept.items() if v not in ("", MASK)}
                start = reader.line_num + 1
        return
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as error:
                raise ValueError(f"{path}, line {number}: not JSON ({error})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}, line {number}: a record must be a JSON object")
            yield number, {k: v for k, v in record.items() if not k.startswith("_") and v != MASK}


def line_numbers(path: str | Path, indexes: Collection[int]) -> dict[int, int]:
    """The line where each record of ``indexes`` (0-based positions in the file) starts."""
    wanted = set(indexes)
    found: dict[int, int] = {}
    if not wanted:
        return found
    for index, (line, _) in enumerate(read_numbered(path)):
        if index in wanted:
            found[index] = line
            if len(found) == len(wanted):
                break
    return found


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
        ordered = {name: row[name] for name in columns_of(type(record)) if name in row}
        ordered.update({k: v for k, v in row.items() if k not in ordered})
        return {k: _masked(v) for k, v in ordered.items()}
    return {k: _masked(v) for k, v in record.items()}


def columns_of(model: type[Model]) -> list[str]:
    """The fields a model declares, in order (``extra`` left out): a CSV's first columns."""
    return [f.name for f in attrs.fields(model) if f.name != "extra"]


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
    """Writes rows as they come, in one format, to a text stream.

    JSON lines and tables are written as they come. A CSV file's header must name every
    column, and a later row may have a field no earlier row had: CSV rows wait in a
    temporary file (not in memory) until :meth:`close` writes the header and them. Its
    columns are ``columns`` (e.g. the model's declared fields), then any others in the
    order they first appear; with no rows, a CSV is its header alone.
    """

    def __init__(self, stream: IO[str], fmt: Format, columns: Iterable[str] = ()) -> None:
        self._stream = stream
        self._format = fmt
        self._columns = list(columns)
        self._spool: IO[str] | None = None
        self._pending: list[dict[str, object]] = []
        self._widths: list[int] = []
        self.written = 0
        """How many rows were written (or are held, for a table or a CSV)."""

    def write(self, row: Mapping[str, object]) -> None:
        """Write one row (a table waits for a few rows to size its columns, a CSV for all)."""
        self.written += 1
        if self._format == "jsonl":
            self._stream.write(json.dumps(row, default=str, ensure_ascii=False) + "\n")
            self._stream.flush()
        elif self._format == "csv":
            if self._spool is None:
                self._spool = tempfile.TemporaryFile("w+", encoding="utf-8", newline="")
            self._columns += [k for k in row if k not in self._columns]
            cells = {k: _cell(v) for k, v in row.items()}
            self._spool.write(json.dumps(cells, ensure_ascii=False) + "\n")
        else:
            self._pending.append(dict(row))
            if len(self._pending) >= 20:
                self._flush_table()
                self._stream.flush()

    def close(self) -> None:
        """Write what is still held (a short table, a CSV) and flush the stream."""
        if self._format == "table":
            self._flush_table()
        elif self._format == "csv":
            writer = csv.DictWriter(self._stream, self._columns, extrasaction="ignore")
            writer.writeheader()
            if self._spool is not None:
                with self._spool:
                    self._spool.seek(0)
                    for line in self._spool:
                        writer.writerow(json.loads(line))
                self._spool = None
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


def csv_header(path: str | Path) -> list[str]:
    """The column names of a CSV file's header line."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        return next(csv.reader(handle), [])


def write_failures(source: str | Path, target: str | Path, errors: Mapping[int, str]) -> int:
    """Copy the failed records of ``source`` (by 0-based index) to ``target``, with errors.

    The target has the source's format (a CSV keeps every column of the source's
    header, empty cells included, so a missing value can be filled in), a ``_line``
    column (CSV) or key (JSON lines): the line of ``source`` where the record starts,
    and an ``_error`` one. An import ignores both: fix the records and import the file
    as it is.
    """
    fmt = format_of(source)
    rows = [
        {**record, "_line": line, "_error": errors[index]}
        for index, (line, record) in enumerate(read_numbered(source))
        if index in errors
    ]
    with open(target, "w", newline="", encoding="utf-8") as handle:
        if fmt == "csv":
            columns = [name for name in csv_header(source) if name and not name.startswith("_")]
            for row in rows:
                columns += [k for k in row if k not in columns and not k.startswith("_")]
            writer = RecordWriter(handle, "csv", [*columns, "_line", "_error"])
        else:
            writer = RecordWriter(handle, "jsonl")
        for row in rows:
            writer.write(row)
        writer.close()
    return writer.written
