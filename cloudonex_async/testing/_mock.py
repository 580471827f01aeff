"""MockTransport: canned answers for a Client, with no server (like httpx's MockTransport)."""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal

from .._protocol import RawResponse, Request

Handler = Callable[[Request], "RawResponse | Awaitable[RawResponse]"]


class MockTransport:
    """A transport that answers every request with what ``handler`` returns.

    ``handler`` takes the :class:`~cloudonex_async.Request` (method, ``path``, params,
    body) and returns a :class:`~cloudonex_async.RawResponse` (or an awaitable of
    one); :func:`json_response` builds the usual ones. It may raise a
    :class:`~cloudonex_async.TransportError` to stand for a network failure. Every
    request is kept in ``requests``.

    Example::

        def handler(request):
            return json_response({"success": True, "data": {"id": 7, "account": "Jane"}})

        async with Client(base_url="https://x.test", api_key="k",
                          transport=MockTransport(handler)) as client:
            assert (await client.customers.get(7)).account == "Jane"
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []

    async def send(self, request: Request) -> RawResponse:
        """Answer ``request`` from the handler."""
        self.requests.append(request)
        answer = self.handler(request)
        if inspect.isawaitable(answer):
            answer = await answer
        if answer.request is None:
            answer.request = request
        return answer


def json_response(
    body: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> RawResponse:
    """An answer whose body is ``body`` as JSON (Decimal amounts as strings)."""
    payload = json.dumps(body, default=lambda v: str(v) if isinstance(v, Decimal) else v)
    return RawResponse(
        status, {"Content-Type": "application/json", **(headers or {})}, payload.encode()
    )
