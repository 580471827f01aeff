"""The sandbox's in-memory database: one table of rows per resource, with id counters."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from typing import Final

from .._clock import Clock

RESOURCES: Final = (
    "customers",
    "invoices",
    "transactions",
    "quotes",
    "products",
    "orders",
    "leads",
    "suppliers",
    "purchases",
    "tickets",
)
#: Every table: the ten resources, users, webhooks, and the shipped style's invoice items.
TABLES: Final = (*RESOURCES, "users", "webhooks", "invoice_items")


class Tables:
    """Rows by table and id. ``store[table][id]`` is the row as the server keeps it."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.store: dict[str, dict[int, dict[str, object]]] = {t: {} for t in TABLES}
        self._ids: dict[str, Iterator[int]] = {t: itertools.count(1) for t in TABLES}

    def next_id(self, table: str) -> int:
        """Allocate the next id of ``table``."""
        return next(self._ids[table])

    def skip_ids(self, table: str, count: int) -> None:
        """Advance ``table``'s id counter, as rows created and deleted long ago would."""
        for _ in range(count):
            next(self._ids[table])

    def insert(self, table: str, row: Mapping[str, object]) -> dict[str, object]:
        """Store ``row`` under a new id and return it."""
        record_id = self.next_id(table)
        stored = {**row, "id": record_id}
        self.store[table][record_id] = stored
        return stored

    def rows(self, table: str) -> list[dict[str, object]]:
        """Copies of the rows of ``table``, by id."""
        return [dict(r) for _, r in sorted(self.store[table].items())]

    def iso_stamp(self) -> str:
        """Now, as this vendor build writes ``created_at``: ``YYYY-MM-DDTHH:MM:SS.000000Z``."""
        return self.now().strftime("%Y-%m-%dT%H:%M:%S.000000Z")

    def now(self) -> datetime:
        """Now, on the sandbox's clock (UTC)."""
        return datetime.fromtimestamp(self.clock.time(), timezone.utc)
