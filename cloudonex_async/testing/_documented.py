"""The sandbox's documented style: the API as the vendor's page describes it.

``/api/v2/<resource>[/<id>]`` with the ``{success, data, message}`` envelope and field
errors in ``errors``. Where the page is silent it follows the endpoint reference:
``page``/``limit`` paging with ``meta: {current_page, total_pages, total_records}``,
``search`` and equality filters, ``users``, ``reports/financial``, ``webhooks``, and
``POST /api/v2/batch/<resource>``, whose answer it defines: one result per input record,
in order, each with ``index`` and either ``id``/``data`` or ``errors``.
"""

from __future__ import annotations

import calendar
import datetime as dt
import itertools
import math
import re
from collections.abc import Collection, Mapping
from decimal import Decimal, InvalidOperation
from http import HTTPStatus
from typing import Literal, Protocol

from aiohttp import web

from ._http import Answer, Incoming, LoggedRequest, read_json_or_form
from ._tables import RESOURCES, Tables

Paging = Literal["meta", "total_records", "plain", "ignore", "stuck"]

_REQUIRED: Mapping[str, tuple[str, ...]] = {
    "customers": ("account",),
    "invoices": ("customer_id",),
    "transactions": ("type", "amount"),
    "quotes": ("customer_id",),
    "products": ("name",),
    "orders": (),
    "leads": ("first_name",),
    "suppliers": ("account",),
    "purchases": ("supplier_id",),
    "tickets": ("subject",),
    "users": ("username",),
    "webhooks": ("url",),
}
_COLLECTIONS = (*RESOURCES, "users", "webhooks")
_MONEY = frozenset({"amount", "price", "tax_rate", "qty", "taxed"})
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class Settings(Protocol):
    """The sandbox settings the documented routes read (a SandboxServer has them)."""

    paging: Paging
    default_page_size: int
    max_page_size: int
    batch: bool
    batch_max: int


class DocumentedRoutes:
    """Answers requests as the documented API does."""

    name = "documented"

    def __init__(self, settings: Settings, tables: Tables) -> None:
        self.settings = settings
        self.tables = tables

    # -- the style's shared answers ---------------------------------------------------

    def classify(self, method: str, segments: list[str]) -> tuple[str | None, str]:
        """Name the resource and the action of a request (for the log and for routing)."""
        if segments[0] == "batch" and len(segments) == 2:
            return segments[1], "batch"
        if segments[0] == "reports":
            return "reports", "report" if method == "GET" else "other"
        if len(segments) == 1:
            return segments[0], {"GET": "list", "POST": "create"}.get(method, "other")
        return segments[0], {"GET": "get", "PUT": "update", "DELETE": "delete"}.get(method, "other")

    async def read_body(self, request: web.Request) -> dict[str, object]:
        """Read a JSON body, or form fields (PHP-style nesting)."""
        return await read_json_or_form(request, json_allowed=True)

    def unauthorized(self) -> Answer:
        """The answer to a missing or wrong key."""
        return Answer(401, failure("No valid API key provided."))

    def no_route(self) -> Answer:
        """The answer to a path outside ``api/v2/<resource>``."""
        return Answer(404, failure("Unknown resources requested!"))

    def server_error(self, status: int) -> Answer:
        """A failure of the server itself (injected faults)."""
        return Answer(status, failure(HTTPStatus(status).phrase))

    # -- routing ------------------------------------------------------------------------

    def route(self, incoming: Incoming) -> Answer:
        """Answer a request that :meth:`classify` has named."""
        log, segments = incoming.log, incoming.segments
        resource, action = log.resource, log.action
        if action == "batch":
            if not self.settings.batch or resource not in RESOURCES:
                return self.no_route()
            if incoming.method != "POST":  # the path exists; only POST is allowed
                return Answer(405, failure("Unknown Method!"))
            return self._batch(log, resource, incoming.body)
        if action == "report":
            if segments != ["reports", "financial"]:
                return self.no_route()
            return self._financial(incoming.query)
        if resource not in _COLLECTIONS or len(segments) > 2:
            return self.no_route()
        if action == "other":
            return Answer(405, failure("Unknown Method!"))
        if action == "list":
            return self._list(resource, incoming.query)
        if action == "create":
            return self._create(log, resource, incoming.body)
        if not segments[1].isdigit():
            return self.no_route()
        if resource in ("users", "webhooks") and action != "get":
            return Answer(405, failure("Unknown Method!"))
        record_id = int(segments[1])
        record = self.tables.store[resource].get(record_id)
        if record is None:
            return Answer(404, failure(f"{resource[:-1].capitalize()} not found"))
        if action == "get":
            return Answer(200, success(record))
        if action == "delete":
            del self.tables.store[resource][record_id]
            return Answer(200, success(None, "Deleted successfully"))
        changes = incoming.body
        errors = self.validate(resource, changes, partial=True)
        if errors:
            return Answer(400, failure("Validation failed", errors))
        record.update(typed(changes))
        record.update(id=record_id, updated_at=self.tables.iso_stamp())
        return Answer(200, success(record, "Updated successfully"))

    def seed_row(self, resource: str, record: Mapping[str, object]) -> dict[str, object]:
        """A row stored directly by :meth:`SandboxServer.seed` (no validation)."""
        return {"created_at": self.tables.iso_stamp(), **record}

    def validate(
        self, resource: str, data: Mapping[str, object], *, partial: bool = False
    ) -> dict[str, str]:
        """Field errors of a record (every required field, unless ``partial``)."""
        errors: dict[str, str] = {}
        if not partial:
            for name in _REQUIRED[resource]:
                if data.get(name) in (None, ""):
                    errors[name] = f"{name.replace('_', ' ').capitalize()} is required"
        email = data.get("email")
        if email not in (None, "") and not (isinstance(email, str) and _EMAIL.match(email)):
            errors["email"] = "Invalid email format"
        for name in ("customer_id", "supplier_id"):
            target = "customers" if name == "customer_id" else "suppliers"
            value = data.get(name)
            if value not in (None, "") and as_int(value) not in self.tables.store[target]:
                errors[name] = f"{target[:-1].capitalize()} not found"
        if resource == "webhooks":
            errors.update(_webhook_errors(data))
        try:
            typed(data)
        except (InvalidOperation, TypeError, ValueError):
            errors["amount"] = "Invalid amount"
        return errors

    def _create(self, log: LoggedRequest, resource: str, data: Mapping[str, object]) -> Answer:
        errors = self.validate(resource, data)
        if errors:
            return Answer(400, failure("Validation failed", errors))
        record = self.insert(resource, data)
        log.created = (*log.created, as_int(record["id"]))
        return Answer(201, success(record, "Created successfully"))

    def insert(self, resource: str, data: Mapping[str, object]) -> dict[str, object]:
        """Store a valid record with its server-side fields and return it."""
        record: dict[str, object] = typed(data)
        record.pop("password", None)  # kept by a real server; never answered here
        items = record.get("items")
        if isinstance(items, list) and "amount" not in data:
            record["amount"] = sum(
                (
                    money(i.get("amount", 0)) * money(i.get("qty", 1))
                    for i in items
                    if isinstance(i, dict)
                ),
                Decimal("0.00"),
            )
        stamp = self.tables.iso_stamp()
        record["created_at"] = record["updated_at"] = stamp
        stored = self.tables.insert(resource, record)
        if resource == "invoices":
            stored.setdefault("invoice_number", f"INV-{stored['id']:05d}")
            stored.setdefault("status", "Unpaid")
        return stored

    def _batch(self, log: LoggedRequest, resource: str, body: Mapping[str, object]) -> Answer:
        records = body.get(resource)
        if not isinstance(records, list):
            return Answer(
                400,
                failure("Validation failed", {resource: f"a list of {resource} is required"}),
            )
        if len(records) > self.settings.batch_max:
            return Answer(400, failure(f"At most {self.settings.batch_max} records per batch"))
        results: list[object] = []
        for index, record in enumerate(records):
            errors = (
                self.validate(resource, record)
                if isinstance(record, dict)
                else {"record": "must be an object"}
            )
            if errors:
                results.append(
                    {
                        "index": index,
                        "success": False,
                        "message": "Validation failed",
                        "errors": errors,
                    }
                )
                continue
            assert isinstance(record, dict)
            stored = self.insert(resource, record)
            log.created = (*log.created, as_int(stored["id"]))
            results.append({"index": index, "success": True, "id": stored["id"], "data": stored})
        return Answer(200, success(results, f"{len(log.created)} of {len(records)} created"))

    def _list(self, resource: str, query: Mapping[str, str]) -> Answer:
        filters = {k: v for k, v in query.items() if k not in ("page", "limit", "search")}
        needle = query.get("search", "").lower()
        # Records are stored in id order, so the dict's order is the listing's order.
        rows: Collection[dict[str, object]] = self.tables.store[resource].values()
        if filters or needle:
            rows = [
                r
                for r in rows
                if all(str(r.get(k, "")) == v for k, v in filters.items())
                and (
                    not needle or any(needle in v.lower() for v in r.values() if isinstance(v, str))
                )
            ]
        paging = self.settings.paging
        if paging == "ignore":
            return Answer(200, list(rows))  # a bare array of everything
        try:
            page = max(1, int(query.get("page", "1")))
            size = min(
                self.settings.max_page_size,
                max(1, int(query.get("limit", self.settings.default_page_size))),
            )
        except ValueError:
            return Answer(
                400, failure("Validation failed", {"page": "page and limit must be numbers"})
            )
        if paging == "stuck":
            page = 1
        chunk = list(itertools.islice(rows, (page - 1) * size, page * size))
        body: dict[str, object] = success(chunk)
        if paging == "total_records":
            body["meta"] = {"current_page": page, "total_records": len(rows)}
        elif paging != "plain":
            body["meta"] = {
                "current_page": page,
                "total_pages": max(1, math.ceil(len(rows) / size)),
                "total_records": len(rows),
            }
        return Answer(200, body)

    def _financial(self, query: Mapping[str, str]) -> Answer:
        """Income and expenses of the month's transactions; what its unpaid invoices owe."""
        try:
            year, month = int(query["year"]), int(query["month"])
            first = dt.date(year, month, 1)
        except (KeyError, ValueError):
            return Answer(
                400,
                failure("Validation failed", {"month": "year and month must name a month"}),
            )
        last = first.replace(day=calendar.monthrange(year, month)[1])

        def in_month(record: Mapping[str, object]) -> bool:
            value = str(record.get("date") or record.get("created_at") or "")[:10]
            return first.isoformat() <= value <= last.isoformat()

        totals = {"Income": Decimal("0.00"), "Expense": Decimal("0.00")}
        for row in self.tables.store["transactions"].values():
            kind = row.get("type")
            if kind in totals and in_month(row):
                totals[str(kind)] += money(row.get("amount") or 0)
        outstanding = sum(
            (
                money(row.get("amount") or 0)
                for row in self.tables.store["invoices"].values()
                if row.get("status") != "Paid" and in_month(row)
            ),
            Decimal("0.00"),
        )
        report = {
            "income": totals["Income"],
            "expenses": totals["Expense"],
            "profit": totals["Income"] - totals["Expense"],
            "outstanding_invoices": outstanding,
        }
        return Answer(200, success(report))


def _webhook_errors(data: Mapping[str, object]) -> dict[str, str]:
    errors: dict[str, str] = {}
    url = data.get("url")
    if url not in (None, "") and not (isinstance(url, str) and re.match(r"^https?://\S+$", url)):
        errors["url"] = "Invalid URL"
    events = data.get("events")
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        errors["events"] = "At least one event is required"
    return errors


def typed(data: Mapping[str, object]) -> dict[str, object]:
    """A record as stored: money as Decimal, numeric ``*_id`` strings as ints."""
    out: dict[str, object] = {}
    for key, value in data.items():
        if key in _MONEY and value not in (None, ""):
            out[key] = money(value)
        elif key == "items" and isinstance(value, list):
            out[key] = [typed(i) if isinstance(i, dict) else i for i in value]
        elif key.endswith("_id") and isinstance(value, str) and value.isdigit():
            out[key] = int(value)
        else:
            out[key] = value
    return out


def money(value: object) -> Decimal:
    """Read an amount as a server would; raises TypeError or InvalidOperation."""
    if isinstance(value, bool) or not isinstance(value, (int, str, Decimal)):
        raise TypeError(f"not an amount: {value!r}")
    return Decimal(value)


def as_int(value: object) -> int:
    """An id from an int or numeric string; -1 for anything else."""
    return int(str(value)) if str(value).isdigit() else -1


def success(data: object, message: str = "") -> dict[str, object]:
    """The documented success envelope."""
    return {"success": True, "data": data, "message": message}


def failure(message: str, errors: Mapping[str, str] | None = None) -> dict[str, object]:
    """The documented error envelope."""
    return {"success": False, "errors": dict(errors or {}), "message": message}
