"""Resource[M]: get, create, update, delete and list for one endpoint, as declarations."""

from __future__ import annotations

import builtins
import contextlib
import os
import weakref
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
)
from typing import Any, Generic, Literal, TypeVar, overload

import attrs
import cattrs

from .._bulk import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_BULK_CONCURRENCY,
    BulkJob,
    OnSend,
)
from .._convert import converter_for, read_input, read_record
from .._journal import Journal
from .._outcomes import BulkProgress, BulkResult, Outcome, SyncPlan, SyncResult
from .._pagination import DEFAULT_PAGE_SIZE, Page, Paginator, ServedPageSize
from .._profile import ServerProfile
from .._protocol import Envelope, created_id, format_id
from .._ratelimit import Priority
from .._secret import revealed, without_secrets
from .._shipped import as_stored_text, unescape_text
from .._sync import Normalize, Strategy, SyncJob, default_normalize, run_sync
from ..errors import (
    BulkError,
    ConfigurationError,
    OutcomeUnknownError,
    ResponseParseError,
    SyncError,
    UnsupportedError,
    ValidationError,
)
from ..models import Model
from ._api import ClientAPI
from ._operations import CreateOperation, DeleteOperation, UpdateOperation

M = TypeVar("M", bound=Model)

# One lenient converter per client, so each client warns once per field.
_LENIENT: weakref.WeakKeyDictionary[ClientAPI, cattrs.Converter] = weakref.WeakKeyDictionary()


def _converter_of(client: ClientAPI) -> cattrs.Converter:
    if not client.config.lenient_values:
        return converter_for(lenient=False)
    if client not in _LENIENT:
        _LENIENT[client] = converter_for(lenient=True)
    return _LENIENT[client]


async def _collect(outcomes: AsyncIterator[Outcome[M]], raise_on_error: bool) -> BulkResult[M]:
    async with contextlib.aclosing(outcomes) as stream:  # type: ignore[type-var]
        collected = [outcome async for outcome in stream]
    result = BulkResult(sorted(collected, key=lambda o: o.index))
    if raise_on_error and (result.failed or result.unknown):
        raise BulkError(result)  # type: ignore[arg-type]
    return result


RecordInput = Mapping[str, object] | Model
"""What create and update accept: a mapping of fields, or a model instance."""

Operation = Literal["list", "get", "create", "update", "delete"]
ALL_OPERATIONS: frozenset[Operation] = frozenset({"list", "get", "create", "update", "delete"})


class Resource(Generic[M]):
    """One API resource (``/api/v2/<path>``) whose records are ``model`` instances.

    Subclasses declare ``path`` (the plural listing path), ``item`` (the singular name
    that ``item_paths="singular"`` servers use for one record: ``customer/7``) and
    ``model``; the shipped 4.x dialect's differences are hooks (:meth:`_from_wire`,
    :meth:`_to_wire`) that default to the documented shapes.
    """

    path: str
    item: str
    model: type[M]
    #: What the API offers on this resource.
    operations: frozenset[Operation] = ALL_OPERATIONS
    #: Keys of a create answer that hold the new record's id.
    created_keys: tuple[str, ...] = ("id",)
    #: Set where shipped 4.x code answers this resource wrongly: the reason.
    shipped_unsupported: str | None = None
    #: Whether shipped 4.x code passes this resource's text through its HTML sanitizer
    #: (it stores ``Müller & Söhne`` as ``Müller &amp; Söhne``).
    shipped_sanitizes_text: bool = False

    def __init__(self, client: ClientAPI) -> None:
        self._client = client
        # Whether the server has POST batch/<path> (None: not known yet); per client.
        self._batch: bool | None = None
        self._converter = _converter_of(client)
        # The server's profile, from the first call on (every call asks ``_ready``).
        self._profile: ServerProfile | None = None
        self._served = ServedPageSize()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} /api/v2/{self.path}>"

    async def get(self, record_id: int | str, *, priority: Priority = "interactive") -> M:
        """Return the record with this id.

        Raises:
            NotFoundError: there is no such record.
            ResponseParseError: the answer is not one record (a server that ignores the
                id and lists everything, or a record with another id).
        """
        profile = await self._ready("get")
        path = self._item_path(profile, record_id)
        envelope = await self._client.call("GET", path, priority=priority)
        return self._one(envelope.data, f"GET {path}", expected_id=format_id(record_id))

    async def create(self, data: RecordInput, *, priority: Priority = "interactive") -> M:
        """Create a record and return it (with its new id).

        Against shipped 4.x code, whose answer holds only the new id, the record is read
        back (one more request) so the model shows what the server stored.

        Raises:
            ValidationError: the server rejected a field (see ``.errors``), or a value
                could not be read back (``status`` 0: nothing was sent).
            OutcomeUnknownError: the request was sent but the answer was lost.
            UnsupportedError: this server cannot create these records.
        """
        payload = self._checked_payload(data, "the record")
        return await self._create(payload, priority=priority, read_back=True)

    async def update(
        self, record_id: int | str, data: RecordInput, *, priority: Priority = "interactive"
    ) -> M:
        """Change the given fields of a record and return it.

        A model sends every field it holds, including unknown ones kept in ``extra``.

        Raises:
            ValidationError: the server rejected a field, or a value could not be read
                back (``status`` 0: nothing was sent).
            UnsupportedError: this server does not update these records (shipped 4.x
                code accepts customer updates and does nothing).
        """
        payload = self._checked_payload(data, "the changes")
        return await self._update(record_id, payload, priority=priority, read_back=True)

    async def delete(self, record_id: int | str, *, priority: Priority = "interactive") -> None:
        """Delete a record.

        Raises:
            NotFoundError: there is no such record.
            UnsupportedError: this server does not delete these records.
        """
        await self._delete(record_id, priority=priority)

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
        return self._paginator(params, page_size, limit, prefetch, concurrency, priority)

    def _paginator(
        self,
        params: Mapping[str, object],
        page_size: int,
        limit: int | None,
        prefetch: int,
        concurrency: int,
        priority: Priority,
        on_send: OnSend | None = None,
    ) -> Paginator[M]:
        async def fetch(page: int, size: int) -> Envelope:
            profile = await self._ready("list")
            if not profile.paged:
                # Shipped code answers every record at once: the first answer is the
                # listing's one page, and says so to the paginator.
                if page > 1:
                    return Envelope([])
                answer = await self._client.call(
                    "GET", self.path, params=params, priority=priority, on_send=on_send
                )
                return attrs.evolve(answer, top={**answer.top, "meta": {"total_pages": 1}})
            query = {**params, "page": page, "limit": size}
            return await self._client.call(
                "GET", self.path, params=query, priority=priority, on_send=on_send
            )

        return Paginator(
            fetch,
            self._listed,
            page_size=page_size,
            limit=limit,
            prefetch=prefetch,
            concurrency=concurrency,
            served=self._served,
        )

    # -- bulk ---------------------------------------------------------------------------

    def bulk_create_iter(
        self,
        records: Iterable[RecordInput] | AsyncIterable[RecordInput],
        *,
        key: Callable[[Any], object] | None = None,
        concurrency: int = DEFAULT_BULK_CONCURRENCY,
        batch_size: int | None = DEFAULT_BATCH_SIZE,
        journal: str | os.PathLike[str] | Journal | None = None,
        reconcile: Callable[[Any], Awaitable[M | None]] | None = None,
        retry_failed: bool = False,
        on_progress: Callable[[BulkProgress], object] | None = None,
        total: int | None = None,
    ) -> AsyncGenerator[Outcome[M], None]:
        """Create many records; yield each record's Outcome as it is known.

        Every input record gets exactly one outcome: ``created``, ``failed`` (the server
        certainly did not create it: the request never left, or it was refused; a
        record that cannot be sent fails alone, with a ValidationError naming its
        index) or ``unknown`` (the request left and its answer was lost or unreadable).

        If ``on_progress`` or the journal raises, the job stops and the iteration
        raises that error. To stop early, close the iterator (``async with
        contextlib.aclosing(...)``): nothing more is sent, requests already on the wire
        get half a second to finish and be journaled, and no task is left behind.

        Args:
            records: mappings or models, from any iterable or async iterable, consumed
                as the job goes (never loaded whole).
            key: names a record in outcomes and the journal (for example its email).
            concurrency: requests in flight at once for this job (also under the
                client's cap and the shared budget, as bulk priority).
            batch_size: records per ``POST batch/<resource>`` request; None sends one
                request per record. Servers without the batch path are detected (404 or
                405) and remembered, and the job goes on one record at a time.
            journal: where every record's state is kept: a file path (fsync'd JSON lines)
                or a Journal (``RedisJournal`` for machines that lose their disk);
                rerunning the job with the same input and journal skips what was done.
            reconcile: looks up a record whose outcome is unknown (for example by email
                through a filtered ``list``) and returns the existing model or None;
                None means it does not exist, and it is sent once more. Without it,
                such records stay ``unknown`` and are never sent again.
            retry_failed: on a rerun, send records that failed before.
            on_progress: called with a BulkProgress after each record's outcome; if it
                raises, the job ends with its error.
            total: the number of records, for progress, when ``records`` has no len().
        """
        job = BulkJob(
            CreateOperation(self),
            records,
            budget=self._client,
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
        journal: str | os.PathLike[str] | Journal | None = None,
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
            budget=self._client,
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
        journal: str | os.PathLike[str] | Journal | None = None,
        on_progress: Callable[[BulkProgress], object] | None = None,
        total: int | None = None,
    ) -> BulkResult[M]:
        """Delete many records by id (or model). A record already gone counts as deleted."""
        job = BulkJob(
            DeleteOperation(self),
            ids,
            budget=self._client,
            concurrency=concurrency,
            journal=journal,
            on_progress=on_progress,
            total=total,
        )
        return await _collect(job.__aiter__(), raise_on_error)

    # -- sync ---------------------------------------------------------------------------

    @overload
    async def sync(
        self,
        records: Iterable[RecordInput] | AsyncIterable[RecordInput],
        *,
        key: str | Callable[[Any], object],
        dry_run: Literal[True],
        remote_key: str | None = ...,
        normalize: Normalize = ...,
        fields: Iterable[str] | None = ...,
        strategy: Strategy = ...,
        delete_missing: bool = ...,
        max_deletes: int | None = ...,
        journal: str | os.PathLike[str] | Journal | None = ...,
        concurrency: int = ...,
        batch_size: int | None = ...,
        page_size: int = ...,
        raise_on_error: bool = ...,
        on_progress: Callable[[BulkProgress], object] | None = ...,
        on_plan: Callable[[SyncPlan], object] | None = ...,
    ) -> SyncPlan: ...

    @overload
    async def sync(
        self,
        records: Iterable[RecordInput] | AsyncIterable[RecordInput],
        *,
        key: str | Callable[[Any], object],
        dry_run: Literal[False] = ...,
        remote_key: str | None = ...,
        normalize: Normalize = ...,
        fields: Iterable[str] | None = ...,
        strategy: Strategy = ...,
        delete_missing: bool = ...,
        max_deletes: int | None = ...,
        journal: str | os.PathLike[str] | Journal | None = ...,
        concurrency: int = ...,
        batch_size: int | None = ...,
        page_size: int = ...,
        raise_on_error: bool = ...,
        on_progress: Callable[[BulkProgress], object] | None = ...,
        on_plan: Callable[[SyncPlan], object] | None = ...,
    ) -> SyncResult[M]: ...

    async def sync(
        self,
        records: Iterable[RecordInput] | AsyncIterable[RecordInput],
        *,
        key: str | Callable[[Any], object],
        dry_run: bool = False,
        remote_key: str | None = None,
        normalize: Normalize = default_normalize,
        fields: Iterable[str] | None = None,
        strategy: Strategy = "auto",
        delete_missing: bool = False,
        max_deletes: int | None = None,
        journal: str | os.PathLike[str] | Journal | None = None,
        concurrency: int = DEFAULT_BULK_CONCURRENCY,
        batch_size: int | None = DEFAULT_BATCH_SIZE,
        page_size: int = DEFAULT_PAGE_SIZE,
        raise_on_error: bool = False,
        on_progress: Callable[[BulkProgress], object] | None = None,
        on_plan: Callable[[SyncPlan], object] | None = None,
    ) -> SyncResult[M] | SyncPlan:
        """Make this resource hold ``records``: create what is new, update what changed.

        Every input record ends with exactly one outcome: ``created``, ``updated``
        (only the fields that differ are sent), ``unchanged``, ``failed`` or
        ``unknown``. The remote records are found the cheapest way by requests: a scan
        of the listing, or one filtered lookup per key. Everything runs at ``"bulk"``
        priority under the client's budget. The input is read whole before the first
        request (its keys are needed to plan).

        Args:
            records: mappings or models, from any iterable or async iterable.
            key: the field that names a record on both sides (``"email"``), or a
                function of an input record that returns its key; then ``remote_key``
                names the field that holds it on the server.
            dry_run: plan without writing; returns a :class:`SyncPlan` (counts, the
                requests a real run costs, and an ETA from the budget).
            remote_key: the server's field for the key (default: ``key``, when a name).
            normalize: how keys are compared (default: text trimmed and case-folded).
            fields: the fields compared and sent (default: each record's own fields).
            strategy: ``"auto"`` (the cheaper of the two), ``"scan"`` or ``"lookup"``.
            delete_missing: also delete remote records whose key is not in the input;
                needs ``max_deletes``, the most this run may delete (the rest are
                reported ``skipped``), a guard against an empty or truncated input.
            journal: a file path or a Journal (``RedisJournal``): a rerun after a crash
                skips what is settled and finds by key what was in flight.
            concurrency: as for :meth:`bulk_create_iter`.
            batch_size: as for :meth:`bulk_create_iter`.
            page_size: records per listing page, for the scan.
            raise_on_error: raise SyncError if a record failed or is unknown.
            on_progress: called with a BulkProgress as records are settled. If it
                raises, the sync stops and raises that error (what was written stays
                written, and journaled).
            on_plan: called once with the :class:`SyncPlan` before the first write, so
                the plan can be shown without paying for a second read of the server;
                raise from it to stop before anything is written.

        An input record that cannot be synced (not a mapping, no key, a value that
        cannot be sent and read back) fails alone, with a ValidationError naming it.

        Raises:
            ConfigurationError: ``delete_missing`` without ``max_deletes``, or a key
                function without ``remote_key``.
            SyncError: ``raise_on_error=True`` and some records failed or are unknown.
        """
        if remote_key is None:
            if not isinstance(key, str):
                raise ConfigurationError(
                    "key= is a function: pass remote_key= too, the server's field that "
                    "holds the key"
                )
            remote_key = key
        self._profile = profile = await self._client.server_profile()
        job: SyncJob[M] = SyncJob(
            source=self,
            budget=self._client,
            creates=CreateOperation(self),
            updates=UpdateOperation(self),
            deletes=DeleteOperation(self),
            records=records,
            key=key,
            remote_key=remote_key,
            normalize=normalize,
            fields=None if fields is None else list(fields),
            strategy=strategy,
            delete_missing=delete_missing,
            max_deletes=max_deletes,
            journal=journal,
            concurrency=concurrency,
            batch_size=batch_size,
            batch_possible=self._batch is not False and profile.batch is not False,
            page_size=page_size,
            on_progress=on_progress,
            on_plan=on_plan,
        )
        outcome = await run_sync(job, dry_run=dry_run)
        if isinstance(outcome, SyncResult) and raise_on_error:
            if outcome.failed or outcome.unknown:
                raise SyncError(outcome)  # type: ignore[arg-type]
        return outcome

    def _scan(self, page_size: int, on_send: OnSend) -> AsyncGenerator[Page[M], None]:
        """Walk the whole listing at bulk priority, one page at a time (for sync)."""
        return self._paginator({}, page_size, None, 0, 1, "bulk", on_send).pages()

    async def _lookup(
        self, field: str, value: object, page_size: int, on_send: OnSend
    ) -> builtins.list[M]:
        """The records whose ``field`` equals ``value``: one filtered listing (for sync)."""
        listing = self._paginator({field: value}, page_size, None, 0, 1, "bulk", on_send)
        return await listing.collect()

    # -- the request path's pieces ----------------------------------------------------

    async def _ready(self, operation: Operation) -> ServerProfile:
        """Return the server's profile, or raise UnsupportedError if it cannot do this."""
        profile = await self._client.server_profile()
        if operation not in self.operations:
            raise UnsupportedError(
                f"the CloudOnex API has no {operation} for {self.path}; "
                f"it offers {', '.join(sorted(self.operations))}",
                resource=self.path,
                operation=operation,
                profile=profile.name,
            )
        if profile.shipped and self.shipped_unsupported:
            raise UnsupportedError(
                f"{self.path} cannot be used on this server (profile 'shipped'): "
                f"{self.shipped_unsupported}; nothing was sent",
                resource=self.path,
                operation=operation,
                profile=profile.name,
            )
        self._profile = profile
        return profile

    def _item_path(self, profile: ServerProfile, record_id: int | str | None = None) -> str:
        base = self.item if profile.item_paths == "singular" else self.path
        return base if record_id is None else f"{base}/{format_id(record_id)}"

    def _from_wire(self, data: object) -> object:
        """Map a record as the server sent it onto the model's field names.

        On shipped servers, text that their HTML sanitizer escaped is unescaped, so the
        model holds it as it was sent (``Müller & Söhne``, not ``Müller &amp; Söhne``).
        """
        if self._sanitized() and isinstance(data, Mapping):
            return {k: unescape_text(v) if isinstance(v, str) else v for k, v in data.items()}
        return data

    def _sanitized(self) -> bool:
        profile = self._profile
        return self.shipped_sanitizes_text and profile is not None and profile.shipped

    def _to_wire(
        self, profile: ServerProfile, payload: dict[str, object], operation: Operation
    ) -> dict[str, object]:
        """Map a create or update payload onto what the server reads."""
        return payload

    async def _create(
        self,
        payload: dict[str, object],
        *,
        priority: Priority,
        read_back: bool,
        on_send: OnSend | None = None,
    ) -> M:
        profile = await self._ready("create")
        path = self._item_path(profile)
        body = self._to_wire(profile, payload, "create")
        envelope = await self._client.call(
            "POST", path, body=body, priority=priority, on_send=on_send
        )
        data = self._from_wire(envelope.data)
        if isinstance(data, Mapping) and "id" in data:  # the documented answer: the record
            new_id = created_id(data, ("id",))
            if new_id is None:
                raise OutcomeUnknownError(
                    f"POST {path} answered a record whose id is not an id "
                    f"({data.get('id')!r}): the record may or may not exist; look it up "
                    "before creating it again",
                    method="POST",
                    url=path,
                    reason="the answer named no valid id",
                )
            return self._to_model({**payload, **data, "id": new_id}, f"POST {path}")
        if envelope.legacy and profile.body_encoding == "json":
            # Only shipped 4.x code answers {"error": false, ...}, and it reads form
            # fields only: the record was created from none of the fields sent.
            raise ConfigurationError(
                f"POST {path}: the server answers like shipped CloudOnex 4.x code, which "
                f"reads form fields only; it ignored the JSON body and created a "
                f"{self.model.__name__} without its fields (answer: {data!r}). Use "
                "body_encoding='form' (or profile='auto'), and remove that record in the "
                "CloudOnex admin"
            )
        new_id = self._created_id(envelope, f"POST {path}")
        if profile.shipped and read_back:
            return await self.get(new_id, priority=priority)
        return self._to_model({**payload, "id": new_id}, f"POST {path}")

    def _created_id(self, envelope: Envelope, request: str) -> int:
        new_id = created_id(envelope.data, self.created_keys)
        if new_id is None:
            raise OutcomeUnknownError(
                f"{request} answered without a valid id for the new record "
                f"(message: {envelope.message!r}): it may or may not exist; look it up "
                "before creating it again",
                method="POST",
                url=request,
                reason="the answer named no valid id",
            )
        return new_id

    async def _update(
        self,
        record_id: int | str,
        payload: dict[str, object],
        *,
        priority: Priority,
        read_back: bool,
        on_send: OnSend | None = None,
    ) -> M:
        profile = await self._ready("update")
        path = self._item_path(profile, record_id)
        body = self._to_wire(profile, payload, "update")
        envelope = await self._client.call(
            "PUT", path, body=body, priority=priority, on_send=on_send
        )
        data = self._from_wire(envelope.data)
        if isinstance(data, Mapping) and data.get("id") is not None:
            merged = {**payload, **data}
            return self._one(merged, f"PUT {path}", expected_id=format_id(record_id), wired=True)
        if profile.shipped and read_back:
            return await self.get(record_id, priority=priority)
        return self._to_model({**payload, "id": int(format_id(record_id))}, f"PUT {path}")

    async def _delete(
        self, record_id: int | str, *, priority: Priority, on_send: OnSend | None = None
    ) -> None:
        profile = await self._ready("delete")
        path = self._item_path(profile, record_id)
        await self._client.call("DELETE", path, priority=priority, on_send=on_send)

    def _one(self, data: object, request: str, *, expected_id: str, wired: bool = False) -> M:
        """The model of an answer that must be exactly one record, with the id asked for.

        ``wired``: ``data`` has been through :meth:`_from_wire` already.
        """
        if not wired:
            data = self._from_wire(data)
        if not isinstance(data, Mapping):
            shape = "a list" if isinstance(data, list) else f"a {type(data).__name__}"
            raise ResponseParseError(
                f"{request} answered {shape} where one {self.model.__name__} was expected; "
                "a server that ignores the id on this path (shipped CloudOnex 4.x code does, "
                "on customers/<id>) needs item_paths='singular' or profile='shipped'",
                status=200,
            )
        got = data.get("id")
        if got is not None and str(got).strip() != expected_id:
            raise ResponseParseError(
                f"{request} answered {self.model.__name__} {got!r}, not {expected_id}: "
                "the server did not return the record asked for",
                status=200,
            )
        return self._to_model(data, request)

    def _listed(self, data: object) -> M:
        data = self._from_wire(data)
        if not isinstance(data, Mapping):
            raise ResponseParseError(
                f"GET {self.path} listed a {type(data).__name__} where each record should be "
                "a JSON object; the server's answer is not a listing of records",
                status=200,
            )
        return self._to_model(data, f"GET {self.path}")

    # -- helpers ----------------------------------------------------------------------

    def _to_model(self, data: object, source: str | None = None) -> M:
        """The model of a record the server sent (``source`` names the request).

        Raises:
            ResponseParseError: a value cannot be read exactly (unless the client is
                ``lenient_values=True``).
        """
        return read_record(self._converter, data, self.model, source=source or self.path)

    def _payload(self, data: RecordInput) -> dict[str, object]:
        """A mapping or model as the JSON-ready fields to send.

        Fields whose value is a :class:`~cloudonex_async.Secret` (what the server sent:
        a password hash, a token) are left out, nested ones too: sent back, a hash would
        become the new password. A plain ``str`` is sent as given.
        """
        if isinstance(data, Model):
            payload: dict[str, object] = self._converter.unstructure(data)
            payload.pop("id", None)
        else:
            payload = self._converter.unstructure(dict(data))
        sendable = without_secrets(payload)
        assert isinstance(sendable, dict)
        return sendable

    def _checked_payload(self, data: object, what: str) -> dict[str, object]:
        """The fields to send for ``data``, checked: every value must read back exactly.

        Raises:
            ValidationError: ``data`` is not a mapping or a model, or a value cannot be
                read back (``status`` 0, the field in ``.errors``; nothing was sent).
        """
        return self._input_record(data, what)[0]

    def _input_record(self, data: object, what: str) -> tuple[dict[str, object], M]:
        """The fields to send for ``data`` (checked), and the record as the server will
        hold it once they are sent and read back (what a sync compares).

        The declared fields go out as the model holds them (``"1,234.50"`` as
        ``1234.50``, ``"12"`` as ``12``), so the server gets what the library reads
        back. On shipped servers whose sanitizer rewrites text, the record holds the
        text the sanitizer keeps (trimmed, unknown tags gone).

        Raises:
            ValidationError: as for :meth:`_checked_payload`.
        """
        if not isinstance(data, (Mapping, Model)):
            raise ValidationError(
                f"{what} is a {type(data).__name__}, not a mapping of fields or a "
                f"{self.model.__name__}; nothing was sent",
                status=0,
                errors={"record": "must be a mapping or a model"},
            )
        payload = self._payload(data)
        model = read_input(payload, self.model, what=what)
        held = self._converter.unstructure(model)
        declared = attrs.fields_dict(self.model).keys() - {"id", "extra"}
        # Every Secret the model holds now is one the caller gave as plain text (the
        # server's were left out of the payload): it goes out as given.
        held = revealed(held)
        payload = {k: held[k] if k in declared and k in held else v for k, v in payload.items()}
        if self._sanitized():
            stored = {k: as_stored_text(v) if isinstance(v, str) else v for k, v in payload.items()}
            model = read_input(stored, self.model, what=what)
        return payload, model
