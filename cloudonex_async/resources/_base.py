"""Resource[M]: get, create, update, delete and list for one endpoint, as declarations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Generic, TypeVar

from .._convert import CONVERTER
from .._pagination import DEFAULT_PAGE_SIZE, Paginator
from .._protocol import Envelope, created_id, format_id
from .._ratelimit import Priority
from ..errors import ResponseParseError
from ..models import Model

if TYPE_CHECKING:
    from .._client import Client

M = TypeVar("M", bound=Model)

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

    async def get(self, record_id: int | str) -> M:
        """Return the record with this id.

        Raises:
            NotFoundError: there is no such record.
        """
        envelope = await self._client._call("GET", f"{self.path}/{format_id(record_id)}")
        data = envelope.data
        if isinstance(data, list) and len(data) == 1:  # some servers wrap a record in a list
            data = data[0]
        return self._to_model(data)

    async def create(self, data: RecordInput) -> M:
        """Create a record and return it (with its new id).

        Raises:
            ValidationError: the server rejected a field (see ``.errors``).
            OutcomeUnknownError: the request was sent but the answer was lost.
        """
        payload = self._payload(data)
        envelope = await self._client._call("POST", self.path, body=payload)
        return self._echo(payload, envelope, None)

    async def update(self, record_id: int | str, data: RecordInput) -> M:
        """Change the given fields of a record and return it.

        A model sends every field it holds, including unknown ones kept in ``extra``.
        """
        path = f"{self.path}/{format_id(record_id)}"
        payload = self._payload(data)
        envelope = await self._client._call("PUT", path, body=payload)
        return self._echo(payload, envelope, int(format_id(record_id)))

    async def delete(self, record_id: int | str) -> None:
        """Delete a record."""
        await self._client._call("DELETE", f"{self.path}/{format_id(record_id)}")

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
