"""The two small interfaces the resources are written against.

:class:`ClientAPI` is what a resource needs of its client (a :class:`~cloudonex_async.Client`
is one); :class:`Endpoint` is what a bulk operation needs of its resource. Neither side
imports the other's module, so the layers stay one-way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, TypeVar

from .._budget import Priority
from .._clock import Clock
from .._config import UNSET, ClientConfig, _Unset
from .._profile import ServerProfile
from .._protocol import Envelope, JSONValue
from .._ratelimit import RateLimitStatus
from ..models import Model

M = TypeVar("M", bound=Model)
OnSend = Callable[[], Awaitable[None]]


class ClientAPI(Protocol):
    """What a resource needs of a client: calls, the server's profile, the budget, time."""

    clock: Clock

    @property
    def config(self) -> ClientConfig:
        """The client's settings."""

    @property
    def rate_limit(self) -> RateLimitStatus:
        """The budget as last seen."""

    async def server_profile(self) -> ServerProfile:
        """The profile the server speaks (asked once under ``profile="auto"``)."""

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, object] | None = None,
        body: JSONValue | Mapping[str, object] = None,
        priority: Priority = "interactive",
        max_wait: float | _Unset | None = UNSET,
        on_send: OnSend | None = None,
    ) -> Envelope:
        """Send one request and return its envelope (see :meth:`Client.call`)."""


class Endpoint(Protocol[M]):
    """What a bulk operation needs of its resource (see ``resources._base.Resource``)."""

    path: str
    model: type[M]
    created_keys: tuple[str, ...]
    _client: ClientAPI
    _batch: bool | None

    def _to_model(self, data: object) -> M: ...

    def _payload(self, data: Mapping[str, object] | Model) -> dict[str, object]: ...

    def _checked_payload(self, data: object, what: str) -> dict[str, object]: ...

    async def _create(
        self,
        payload: dict[str, object],
        *,
        priority: Priority,
        read_back: bool,
        on_send: OnSend | None = None,
    ) -> M: ...

    async def _update(
        self,
        record_id: int | str,
        payload: dict[str, object],
        *,
        priority: Priority,
        read_back: bool,
        on_send: OnSend | None = None,
    ) -> M: ...

    async def _delete(
        self, record_id: int | str, *, priority: Priority, on_send: OnSend | None = None
    ) -> None: ...
