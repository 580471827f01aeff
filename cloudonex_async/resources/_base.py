"""Resource[M]: get, create, update, delete and list for one endpoint, as declarations."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .._bulk import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_BULK_CONCURRENCY,
    BulkJob,
    BulkProgress,
    BulkResult,
    CreateOperation,
    DeleteOperation,
    Outcome,
    UpdateOperation,
)
from .._convert import CONVERTER
from .._pagination import DEFAULT_PAGE_SIZE, Paginator
from .._protocol import Envelope, created_id, format_id
from .._ratelimit import Priority
from ..errors import BulkError, ResponseParseError
from ..models import Model

if TYPE_CHECKING:
    from .._client import Client

M = TypeVar("M", bound=Model)


async def _collect(outcomes: AsyncIterator[Outcome[M]], raise_on_error: bool) -> BulkResult[M]:
    async with contextlib.aclosing(outcomes) as stream:  # type: ignore[type-var]
        collected = [outcome async for outcome in stream]
    result = BulkResult(sorted(collected, key=lambda o: o.index))
    if raise_on_error and (result.failed or result.unknown):
        raise BulkError(result)  # type: ignore[arg-type]
    return result


RecordInput = Mapping[str, object] | Model
"""What create and update accept: a mapping of fields, or a model instance."""


class Resource(Generic[M]):
    """One API resource (``/api/v2/<path>``) whose records are ``model`` instances."""

    path: str
    model: type[M]

    def __init__(self, client: Client) -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"<{type(self).__name__} /api/v2/{self.path}>"

    async def get(self, record_id: int | str, *, priority: Priority = "interactive") -> M:
        """Return the record with this id.

        Raises:
            NotFoundError: there is no such record.
        """
        path = f"{self.path}/{format_id(record_id)}"
        envelope = await self._client._call("GET", path, priority=priority)
        data = envelope.data
        if isinstance(data, list) and len(data) == 1:  # some servers wrap a record in a list
            data = data[0]
        return self._to_model(data)

    async def create(self, data: RecordInput, *, priority: Priority = "interactive") -> M:
        """Create a record and return it (with its new id).

        Raises:
            ValidationError: the server rejected a field (see ``.errors``).
            OutcomeUnknownError: the request was sent but the answer was lost.
        """
        payload = self._payload(data)
        envelope = await self._client._call("POST", self.path, body=payload, priority=priority)
        return self._echo(payload, envelope, None)

    async def update(
        self, record_id: int | str, data: RecordInput, *, priority: Priority = "interactive"
    ) -> M:
        """Change the given fields of a record and return it.

        A model sends every field it holds, including unknown ones kept in ``extra``.
        """
        path = f"{self.path}/{format_id(record_id)}"
        payload = self._payload(data)
        envelope = await self._client._call("PUT", path, body=payload, priority=priority)
        return self._echo(payload, envelope, int(format_id(record_id)))

    async def delete(self, record_id: int | str, *, priority: Priority = "interactive") -> None:
        """Delete a record."""
        path = f"{self.path}/{format_id(record_id)}"
        await self._client._call("DELETE", path, priority=priority)

    def list(
        self,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        limit: int | None = None,
        prefetch: int = 1,
        concurrency: int = 1,
        priority: Priority = "interactive",
        **filters: object,
    ) -> Paginator[M]:
        """Iterate over records, page by page, lazily.

        Args:
            page_size: records per request (sent as the server's ``limit`` parameter).
            limit: stop after this many records.
            prefetch: pages requested ahead while you work on the current one.
            concurrency: pages fetched at once when the server reports the total.
            priority: ``"bulk"`` for background walks that should yield to other calls.
            filters: query parameters, for example ``search="jane"`` or ``status="Unpaid"``.
        """
        params = {k: v for k, v in filters.items() if v is not None}

        async def fetch(page: int, size: int) -> Envelope:
            query = {**params, "page": page, "limit": size}
            return await self._client._call("GET", self.path, params=query, priority=priority)

        return Paginator(
            fetch,
            self._to_model,
            page_size=page_size,
            limit=limit,
            prefetch=prefetch,
            concurrency=concurrency,
        )

    # -- bulk ---------------------------------------------------------------------------

    def bulk_create_iter(
        self,
        records: Iterable[RecordInput] | AsyncIterable[RecordInput],
        *,
        key: Callable[[Any], object] | None = None,
        concurrency: int = DEFAULT_BULK_CONCURRENCY,
        batch_size: int | None = DEFAULT_BATCH_SIZE,
        journal: str | None = None,
        reconcile: Callable[[Any], Awaitable[M | None]] | None = None,
        retry_failed: bool = False,
        on_progress: Callable[[BulkProgress], object] | None = None,
        total: int | None = None,
    ) -> AsyncIterator[Outcome[M]]:
        """Create many records; yield each record's Outcome as it is known.

        Args:
            records: mappings or models, from any iterable or async iterable, consumed
                as the job goes (never loaded whole).
            key: names a record in outcomes and the journal (for example its email).
            concurrency: requests in flight at once for this job (also under the
                client's cap and the shared budget, as bulk priority).
            batch_size: records per ``POST batch/<resource>`` request; None sends one
                request per record. Servers without the batch path are detected (404 or
                405) and remembered, and the job goes on one record at a time.
            journal: a file recording every record's state (fsync'd); rerunning the job
                with the same input and journal skips what was done.
            reconcile: looks up a record whose outcome is unknown (for example by email
                through a filtered ``list``) and returns the existing model or None;
                None means it does not exist, and it is sent once more. Without it,
                such records stay ``unknown`` and are never sent again.
            retry_failed: on a rerun, send records that failed before.
            on_progress: called with a BulkProgress after each record's outcome.
            total: the number of records, for progress, when ``records`` has no len().
        """
        job = BulkJob(
            CreateOperation(self),
            records,
            key=key,
            concurrency=concurrency,
            batch_size=batch_size,
            journal=journal,
            reconcile=reconcile,
            retry_failed=retry_failed,
            on_progress=on_progress,
            total=total,
        )
        return job.__aiter__()

    async def bulk_create(
        self,
        records: Iterable[RecordInput] | AsyncIterable[RecordInput],
        *,
        raise_on_error: bool = False,
        **options: Any,
    ) -> BulkResult[M]:
        """Create many records and return exactly one outcome per record, in input order.

        Takes the options of :meth:`bulk_create_iter`. With ``raise_on_error=True``, a
        record that failed or ended unknown raises BulkError (its ``.result`` has all).
        """
        return await _collect(self.bulk_create_iter(records, **options), raise_on_error)

    async def bulk_update(
        self,
        changes: Iterable[tuple[int | str, RecordInput] | M]
        | AsyncIterable[tuple[int | str, RecordInput] | M],
        *,
        raise_on_error: bool = False,
        key: Callable[[Any], object] | None = None,
        concurrency: int = DEFAULT_BULK_CONCURRENCY,
        journal: str | None = None,
        on_progress: Callable[[BulkProgress], object] | None = None,
        total: int | None = None,
    ) -> BulkResult[M]:
        """Update many records, from ``(id, changes)`` pairs or models with ids.

        Updates are idempotent, so transient failures are retried and a rerun with the
        same journal sends again whatever did not certainly succeed.
        """
        job = BulkJob(
            UpdateOperation(self),
            changes,
            key=key,
            concurrency=concurrency,
            journal=journal,
            on_progress=on_progress,
            total=total,
        )
        return await _collect(job.__aiter__(), raise_on_error)

    async def bulk_delete(
        self,
        ids: Iterable[int | str | M] | AsyncIterable[int | str | M],
        *,
        raise_on_error: bool = False,
        concurrency: int = DEFAULT_BULK_CONCURRENCY,
        journal: str | None = None,
        on_progress: Callable[[BulkProgress], object] | None = None,
        total: int | None = None,
    ) -> BulkResult[M]:
        """Delete many records by id (or model). A record already gone counts as deleted."""
        job = BulkJob(
            DeleteOperation(self),
            ids,
            concurrency=concurrency,
            journal=journal,
            on_progress=on_progress,
            total=total,
        )
        return await _collect(job.__aiter__(), raise_on_error)

    # -- helpers ----------------------------------------------------------------------

    def _to_model(self, data: object) -> M:
        return CONVERTER.structure(data, self.model)

    def _payload(self, data: RecordInput) -> dict[str, object]:
        if isinstance(data, Model):
            payload: dict[str, object] = CONVERTER.unstructure(data)
            payload.pop("id", None)
            return payload
        unstructured: dict[str, object] = CONVERTER.unstructure(dict(data))
        return unstructured

    def _echo(self, payload: dict[str, object], envelope: Envelope, known_id: int | None) -> M:
        """Build the model a write returned, filling in from what was sent.

        The documented envelope returns the whole record; shipped servers return only
        ``{"contact_id": "12"}``, or nothing useful on update.
        """
        data = envelope.data
        if isinstance(data, dict) and "id" in data:
            return self._to_model({**payload, **data})
        new_id = known_id if known_id is not None else created_id(data)
        if new_id is None:
            raise ResponseParseError(
                f"POST {self.path} answered without the new record's id "
                f"(message: {envelope.message!r}); look the record up before creating it again",
                status=200,
            )
        return self._to_model({**payload, "id": new_id})
