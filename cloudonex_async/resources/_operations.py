"""The three bulk operations of a resource: create (with batches), update and delete.

Each implements :class:`cloudonex_async._bulk.Operation` for one resource: it turns an
input value into an :class:`~cloudonex_async._bulk.Item` (a value it cannot send is a
ValidationError, which the job reports for that record alone), and sends it with the
resource's own create, update or delete (at ``"bulk"`` priority, passing the job's
``on_send`` on). A request's error is raised: the job, which knows whether the request
left, decides the record's outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Generic, TypeVar

from .._bulk import Item, KeyFunction, OnSend, digest, key_of
from .._outcomes import Outcome
from .._protocol import JSONValue, created_id
from ..errors import (
    APIError,
    OutcomeUnknownError,
    ResponseParseError,
    UnsupportedError,
    ValidationError,
)
from ..models import Model
from ._api import Endpoint

M = TypeVar("M", bound=Model)

# How an outcome's error names its record: the outcome says which one (its index).
THIS_RECORD = "this record"


def _key(record: object, key: KeyFunction | None) -> str | None:
    """The caller's key of a record; ValidationError if the key function raises on it."""
    return None if key is None else str(key_of(key, record, THIS_RECORD))


def _record_id(value: object) -> int:
    """A record id from an int or a string of digits; ValidationError otherwise."""
    text = str(value).strip() if isinstance(value, (int, str)) else ""
    if isinstance(value, bool) or not text.isdigit() or not text.isascii():
        raise ValidationError(
            f"{THIS_RECORD}: {value!r} is not a record id (digits); nothing was sent",
            status=0,
            errors={"id": "must be a record id"},
        )
    return int(text)


class _Base(Generic[M]):
    name: str
    idempotent: bool

    def __init__(self, resource: Endpoint[M]) -> None:
        self._resource = resource
        self.path = resource.path

    def resumed(self, item: Item, record_id: int | None) -> M | None:
        """The model of a record an earlier run finished (what was sent, and its id)."""
        if record_id is None or self.name == "delete":
            return None
        return self._resource._to_model({**item.payload, "id": record_id})

    def found(self, item: Item, record: object) -> M:
        """The model of a record the ``reconcile`` hook found."""
        if isinstance(record, self._resource.model):
            return record
        return self._resource._to_model(record)

    @property
    def batching(self) -> bool | None:
        """Whether the server takes many records in one request (None: not known yet)."""
        return False


class CreateOperation(_Base[M]):
    """``bulk_create``: POST each record, or ``batch/<resource>`` chunks where offered."""

    name = "create"
    idempotent = False

    def __init__(self, resource: Endpoint[M]) -> None:
        super().__init__(resource)
        self._probe = asyncio.Lock()

    @property
    def batching(self) -> bool | None:
        """Whether the server has ``POST batch/<resource>`` (None: not known yet)."""
        return self._resource._batch

    def item(self, index: int, record: object, key: KeyFunction | None) -> Item:
        """Turn a mapping or model into an Item (its values checked: they must read back)."""
        payload = self._resource._checked_payload(record, THIS_RECORD)
        return Item(index, _key(record, key), digest(payload), payload, None, record)

    async def one(self, item: Item, on_send: OnSend) -> Outcome[M]:
        """Create one record (no read-back on shipped servers: it would double the cost)."""
        model = await self._resource._create(
            item.payload, priority="bulk", read_back=False, on_send=on_send
        )
        return Outcome(item.index, "created", item.key, model, model.id)

    async def batch(self, items: Sequence[Item], on_send: OnSend) -> list[Outcome[M]] | None:
        """Create ``items`` in one request, or None where the server has no batch path."""
        resource = self._resource
        if (await resource._client.server_profile()).batch is False:
            return None
        if resource._batch is None:
            # Until one answer shows whether the server has the batch path, ask once.
            async with self._probe:
                if resource._batch is None:
                    return await self._send_batch(items, on_send)
        if resource._batch is False:
            return None
        return await self._send_batch(items, on_send)

    async def _send_batch(self, items: Sequence[Item], on_send: OnSend) -> list[Outcome[M]] | None:
        resource = self._resource
        body = {resource.path: [item.payload for item in items]}
        try:
            envelope = await resource._client.call(
                "POST", f"batch/{resource.path}", body=body, priority="bulk", on_send=on_send
            )
        except UnsupportedError:
            resource._batch = False
            return None
        except APIError as error:
            if error.status in (404, 405):
                resource._batch = False
                return None
            if isinstance(error, ValidationError) and not error.errors:
                return None  # the batch as a whole was refused (size?): go one by one
            raise
        resource._batch = True
        return self._match(items, envelope.data)

    def _match(self, items: Sequence[Item], data: JSONValue) -> list[Outcome[M]]:
        """Pair the batch answer with its records, by ``index`` or by position.

        Anything that cannot be paired is ``unknown``: it may have been created.
        """
        entries = data if isinstance(data, list) else []
        by_index: dict[int, JSONValue] = {}
        if all(isinstance(e, dict) and isinstance(e.get("index"), int) for e in entries):
            by_index = {e["index"]: e for e in entries if isinstance(e, dict)}  # type: ignore[misc]
        elif len(entries) == len(items):
            by_index = dict(enumerate(entries))
        return [self._entry_outcome(item, by_index.get(n)) for n, item in enumerate(items)]

    def _entry_outcome(self, item: Item, entry: JSONValue) -> Outcome[M]:
        unmatched = OutcomeUnknownError(
            "the batch answer for this record could not be read; look it up before sending it again"
        )
        if not isinstance(entry, dict):
            return Outcome(item.index, "unknown", item.key, error=unmatched)
        if entry.get("success") is False or entry.get("error") is True:
            errors = entry.get("errors")
            fields = {str(k): str(v) for k, v in errors.items()} if isinstance(errors, dict) else {}
            message = str(entry.get("message") or "rejected")
            error = ValidationError(message, status=400, errors=fields)
            return Outcome(item.index, "failed", item.key, error=error)
        record = entry.get("data")
        keys = self._resource.created_keys
        new_id = created_id(record, keys) if isinstance(record, dict) else None
        new_id = new_id if new_id is not None else created_id(entry, keys)
        if new_id is None:
            return Outcome(item.index, "unknown", item.key, error=unmatched)
        returned = record if isinstance(record, dict) else {}
        try:
            model = self._resource._to_model({**item.payload, **returned, "id": new_id})
        except ResponseParseError as error:  # created for certain, but not readable
            return Outcome(item.index, "created", item.key, record_id=new_id, error=error)
        return Outcome(item.index, "created", item.key, model, new_id)


class UpdateOperation(_Base[M]):
    """``bulk_update``: PUT each (id, changes) pair; idempotent, so retried."""

    name = "update"
    idempotent = True

    def item(self, index: int, record: object, key: KeyFunction | None) -> Item:
        """Turn an ``(id, changes)`` pair or a model with an id into an Item."""
        if isinstance(record, Model):
            record_id, changes = record.id, record
        elif isinstance(record, tuple) and len(record) == 2:
            record_id, changes = record
        else:
            raise ValidationError(
                "bulk_update takes (id, changes) pairs or models with an id; record "
                f"{index} is a {type(record).__name__}; nothing was sent",
                status=0,
                errors={"record": "must be an (id, changes) pair or a model"},
            )
        rid = _record_id(record_id)
        payload = self._resource._checked_payload(changes, THIS_RECORD)
        item_key = _key(record, key)
        return Item(index, item_key, digest([rid, payload]), payload, rid, record)

    async def one(self, item: Item, on_send: OnSend) -> Outcome[M]:
        """Update one record."""
        assert item.record_id is not None
        model = await self._resource._update(
            item.record_id, item.payload, priority="bulk", read_back=False, on_send=on_send
        )
        return Outcome(item.index, "updated", item.key, model, item.record_id)

    async def batch(self, items: Sequence[Item], on_send: OnSend) -> list[Outcome[M]] | None:
        """Updates go one request each."""
        return None


class DeleteOperation(_Base[M]):
    """``bulk_delete``: DELETE each id; idempotent, and deleting what is gone succeeds."""

    name = "delete"
    idempotent = True

    def item(self, index: int, record: object, key: KeyFunction | None) -> Item:
        """Turn an id or a model into an Item."""
        rid = _record_id(record.id if isinstance(record, Model) else record)
        return Item(index, _key(record, key), digest(rid), {}, rid, record)

    async def one(self, item: Item, on_send: OnSend) -> Outcome[M]:
        """Delete one record."""
        assert item.record_id is not None
        await self._resource._delete(item.record_id, priority="bulk", on_send=on_send)
        return Outcome(item.index, "deleted", item.key, record_id=item.record_id)

    async def batch(self, items: Sequence[Item], on_send: OnSend) -> list[Outcome[M]] | None:
        """Deletes go one request each."""
        return None
