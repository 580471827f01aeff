"""The aiohttp transport itself, against aioresponses: what each aiohttp failure becomes.

Whether a request may have left decides whether a POST is "unknown" or safely sent
again, so each aiohttp exception is pinned to ``request_sent``; and aiohttp's own
exception texts, which may hold the query-auth URL, never carry the key out.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import traceback
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import ClientResponse
from aioresponses import aioresponses
from aioresponses import core as aioresponses_core
from yarl import URL

from cloudonex_async import (
    AiohttpTransport,
    ConfigurationError,
    Request,
    RequestTimeoutError,
    TransportError,
)
from cloudonex_async._protocol import build_request

KEY = "KEY-0b5e-transport-secret"
ANY = re.compile(r"^https://crm\.example\.com/.*$")


class _CompatResponse(ClientResponse):
    """aioresponses 0.7.9 builds responses without aiohttp 3.14's ``stream_writer``.

    Upstream: pnuckowski/aioresponses#289. Supply a stand-in until a release fixes it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if "stream_writer" in inspect.signature(ClientResponse.__init__).parameters:
            kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
        super().__init__(*args, **kwargs)


@pytest.fixture
def mocked(monkeypatch: pytest.MonkeyPatch) -> Iterator[aioresponses]:
    monkeypatch.setattr(aioresponses_core, "ClientResponse", _CompatResponse)
    with aioresponses() as mock:
        yield mock


def transport() -> AiohttpTransport:
    return AiohttpTransport(
        api_key=KEY, headers={}, timeout=5.0, connect_timeout=1.0, max_connections=4
    )


def request(method: str = "POST") -> Request:
    return build_request(
        site_root="https://crm.example.com",
        api_key=KEY,
        auth="query",  # the key is in the URL aiohttp sees
        method=method,
        path="customers",
        body={"account": "A"},
    )


CONNECTION_KEY = aiohttp.client_reqrep.ConnectionKey(
    "crm.example.com", 443, True, True, None, None, None
)


@pytest.mark.parametrize(
    ("exception", "cls", "sent"),
    [
        (
            aiohttp.ClientConnectorError(CONNECTION_KEY, OSError(111, "Connection refused")),
            TransportError,
            False,
        ),
        (
            aiohttp.ConnectionTimeoutError(f"Connection timeout to {KEY}"),
            RequestTimeoutError,
            False,
        ),
        (aiohttp.ServerDisconnectedError(), TransportError, True),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), TransportError, True),
        (asyncio.TimeoutError(), RequestTimeoutError, True),
        (
            aiohttp.SocketTimeoutError(f"Timeout on reading data from {KEY}"),
            RequestTimeoutError,
            True,
        ),
        (aiohttp.ClientPayloadError("Response payload is not completed"), TransportError, True),
    ],
)
async def test_each_aiohttp_failure_says_whether_the_request_left(
    mocked: aioresponses, exception: Exception, cls: type[TransportError], sent: bool
) -> None:
    mocked.post(ANY, exception=exception)
    sender = transport()
    try:
        with pytest.raises(cls) as info:
            await sender.send(request())
    finally:
        await sender.aclose()
    assert type(info.value) is cls
    assert info.value.request_sent is sent
    shown = [str(info.value), repr(info.value), info.value.reason, info.value.url]
    shown += traceback.format_exception(info.value)
    assert info.value.__cause__ is None
    assert info.value.__context__ is None  # aiohttp's text may hold the URL, key and all
    for text in shown:
        assert KEY not in text
    assert "customers" in info.value.url


async def test_an_answer_comes_back_whole_with_its_request(mocked: aioresponses) -> None:
    mocked.post(ANY, status=201, body=b'{"success": true}', headers={"X-RateLimit-Remaining": "9"})
    sender = transport()
    sent = request()
    try:
        answer = await sender.send(sent)
    finally:
        await sender.aclose()
    assert (answer.status, answer.body, answer.request) == (201, b'{"success": true}', sent)
    assert answer.headers["x-ratelimit-remaining"] == "9"  # case-insensitive
    [(method, url)] = list(mocked.requests)
    assert method == "POST"
    assert URL(url).query["api_key"] == KEY  # the key goes on the wire, only there


async def test_a_closed_transport_refuses_to_send() -> None:
    sender = transport()
    await sender.aclose()
    with pytest.raises(ConfigurationError, match="closed"):
        await sender.send(request())
