"""The transport seam, and the one transport that talks to aiohttp.

A :class:`Transport` is any object with ``async send(request) -> RawResponse``: the
client's pipeline hands it one request at a time, once the request holds a budget
token and a concurrency slot. :class:`AiohttpTransport` is the default, and the only
module of the library that imports aiohttp. Its failures are translated into
:class:`TransportError` and its subclasses, with the API key scrubbed from every
message, and with ``request_sent`` saying whether the request may have left:
a connection that could not be opened (refused, DNS, connect timeout) means it did not.
CancelledError always passes through untouched.
"""

from __future__ import annotations

import asyncio
import ssl as _ssl
from collections.abc import Mapping
from typing import Protocol

import aiohttp
import attrs

from ._config import ClientConfig
from ._protocol import RawResponse, Request, redact, session_headers
from .errors import (
    ConfigurationError,
    RequestTimeoutError,
    ResponseTooLargeError,
    TransportError,
)

#: The aiohttp session type a Client can borrow (``Client(session=...)``).
ClientSession = aiohttp.ClientSession


class Transport(Protocol):
    """Sends one request and returns the whole answer.

    Raise :class:`~cloudonex_async.TransportError` (``request_sent=False`` when the
    request certainly never left) for a request that got no complete answer. A
    transport may also have ``async aclose()``: closing the client calls it.
    """

    async def send(self, request: Request) -> RawResponse:
        """Send ``request``; return its answer."""


def _shorter(read_timeout: float, total: float) -> float | None:
    """``read_timeout``, if it is shorter than ``total`` (else it could never fire first)."""
    return read_timeout if read_timeout < total else None


class AiohttpTransport:
    """Sends requests on one pooled ``aiohttp.ClientSession`` (owned or borrowed).

    An owned session and its connector are created lazily inside the running loop, as
    aiohttp requires, with a pool as large as the client's concurrency cap: the client
    holds a slot for every request in flight, so no request ever waits for a pooled
    connection, and the connect timeout bounds opening one. A borrowed session may pool
    fewer; its waits fall under the connect timeout too. A borrowed session is never
    closed here, and keeps aiohttp's habit of sending an idempotent request once more
    when a reused connection drops (the budget cannot count that one).

    Args:
        api_key: scrubbed from every error message.
        headers: sent with every request (set once on an owned session).
        timeout: seconds for a whole request. connect_timeout: seconds to get a connection.
        read_timeout: seconds an answer may pause between two pieces.
        max_connections: the pool's size. max_response_bytes: the largest body read,
            after decompression. ssl: passed to aiohttp.
        session: an ``aiohttp.ClientSession`` to borrow.
    """

    def __init__(
        self,
        *,
        api_key: str,
        headers: Mapping[str, str],
        timeout: float,
        connect_timeout: float,
        max_connections: int,
        read_timeout: float | None = None,
        max_response_bytes: int = 16 * 1024 * 1024,
        ssl: _ssl.SSLContext | bool | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._api_key = api_key
        self._headers = dict(headers)
        self._owns_session = session is None
        self._max_bytes = max_response_bytes
        self._read_timeout = read_timeout or timeout
        # A read timeout no shorter than the whole request's can never fire first, but
        # aiohttp would move its timer at every piece of the answer: it is left out.
        read = _shorter(self._read_timeout, timeout)
        if self._owns_session:
            # No pool waits (see the class docstring): bound the TCP/TLS connect only,
            # which costs no timer for a pooled connection.
            self._timeout = aiohttp.ClientTimeout(
                total=timeout, sock_connect=connect_timeout, sock_read=read
            )
        else:
            self._timeout = aiohttp.ClientTimeout(
                total=timeout, connect=connect_timeout, sock_read=read
            )
        self._max_connections = max_connections
        self._ssl: _ssl.SSLContext | bool = True if ssl is None else ssl
        self._session = session
        self._closed = False
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    @classmethod
    def from_config(
        cls, config: ClientConfig, session: aiohttp.ClientSession | None = None
    ) -> AiohttpTransport:
        """Build the transport a Client of ``config`` uses."""
        return cls(
            api_key=config.api_key,
            headers=session_headers(
                api_key=config.api_key, auth=config.auth, user_agent=config.user_agent
            ),
            timeout=config.timeout,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
            max_connections=config.max_concurrency,
            max_response_bytes=config.max_response_bytes,
            ssl=config.ssl,
            session=session,
        )

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ConfigurationError("this client is closed; create a new Client")
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._max_connections, ssl=self._ssl)
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                timeout=self._timeout,
                raise_for_status=False,
            )
            # aiohttp sends an idempotent request again, unasked, when a reused
            # connection drops: one grant would become two requests the budget never
            # saw (and a 429 for someone). The retry policy decides retries instead.
            # There is no public switch; aiohttp's own test client flips the same flag.
            if hasattr(self._session, "_retry_connection"):
                self._session._retry_connection = False
        return self._session

    async def send(self, request: Request) -> RawResponse:
        """Send ``request`` and read the whole answer.

        Raises:
            TransportError: no complete answer; ``request_sent`` is False when no
                connection was opened, so nothing was written.
            RequestTimeoutError: the timeout passed.
        """
        session = self._session or self._get_session()
        timeout = self._timeout if request.timeout is None else self._timeout_for(request.timeout)
        headers = request.headers
        if not self._owns_session:
            headers = {**self._headers, **headers}
        try:
            # Awaited, not entered: "async with" would add two coroutine frames per request.
            response = await session.request(
                request.method,
                request.url,
                params=request.params or None,
                headers=headers or None,
                data=request.body,
                timeout=timeout,
                allow_redirects=False,
            )
            try:
                if self._fits(response, request):
                    body = await response.read()  # the size is known and fine: one read
                else:
                    body = await self._read(response, request)
            finally:
                response.release()
            # response.headers: a case-insensitive, read-only view
            return RawResponse(response.status, response.headers, body, request)
        except (asyncio.CancelledError, ResponseTooLargeError):
            raise
        except aiohttp.ConnectionTimeoutError as exc:
            # No connection within connect_timeout (a pool wait included): nothing left.
            error = self._error(
                RequestTimeoutError, request, "timed out getting a connection", exc, sent=False
            )
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            total = self._timeout.total if request.timeout is None else request.timeout
            error = self._error(
                RequestTimeoutError,
                request,
                f"timed out waiting for the answer (timeout={total:g} s per attempt, or a "
                "pause longer than read_timeout)",
                exc,
                sent=True,
                advice="raise the timeout (Client(timeout=...) or with_options(timeout=...)) "
                "if the server is slow, else try again later",
            )
        except aiohttp.ClientConnectorError as exc:
            # The TCP (or TLS) connection never opened: nothing was sent.
            error = self._error(TransportError, request, "could not connect", exc, sent=False)
        except (aiohttp.ClientError, OSError) as exc:
            error = self._error(
                TransportError, request, "the connection failed during the request", exc, sent=True
            )
        # Raised outside the handlers, so neither __cause__ nor __context__ keeps
        # aiohttp's exception, whose text may hold the key (query-auth URLs).
        raise error

    def _timeout_for(self, seconds: float) -> aiohttp.ClientTimeout:
        """This transport's timeouts, with ``seconds`` for the whole exchange (one call's)."""
        cached = self._timeouts.get(seconds)
        if cached is None:
            base = self._timeout
            cached = self._timeouts[seconds] = attrs.evolve(
                base,
                total=seconds,
                connect=None if base.connect is None else min(base.connect, seconds),
                sock_connect=None if base.sock_connect is None else min(base.sock_connect, seconds),
                sock_read=_shorter(self._read_timeout, seconds),
            )
        return cached

    def abandon(self) -> bool:
        """Drop an owned session that was never closed, at garbage collection.

        Returns whether there was one. Its connections are closed if the loop still
        runs; the session is detached so that aiohttp does not warn a second time.
        """
        session, self._session = self._session, None
        self._closed = True
        if session is None or not self._owns_session or session.closed:
            return False
        connector = session.connector
        session.detach()
        # Connector.close() returns an awaitable that cannot be awaited here; its
        # synchronous half closes the sockets (and marks it closed, so it does not warn).
        close_now = getattr(connector, "_close", None)
        if close_now is not None:
            try:
                close_now()
            except Exception:  # pragma: no cover - a loop already gone
                pass
        return True

    def _fits(self, response: aiohttp.ClientResponse, request: Request) -> bool:
        """Whether the body is announced, uncompressed, within max_response_bytes.

        Raises ResponseTooLargeError (closing the response) if it is announced larger.
        """
        length = response.content_length
        if length is None or "Content-Encoding" in response.headers:
            return False  # its size is known only once read (see _read)
        if length > self._max_bytes:
            response.close()
            raise self._too_large(request, f"it announced {length} bytes")
        return True

    async def _read(self, response: aiohttp.ClientResponse, request: Request) -> bytes:
        """Read a body of unknown size, never more than max_response_bytes of it.

        Counted after decompression, as it arrives.
        """
        limit = self._max_bytes
        chunks: list[bytes] = []
        size = 0
        content = response.content  # decompressed as it arrives, a chunk at a time
        while chunk := await content.readany():
            size += len(chunk)
            if size > limit:
                response.close()  # the rest is never read: the connection goes
                raise self._too_large(request, "it went on past that")
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self, request: Request, how: str) -> ResponseTooLargeError:
        reason = f"the answer is larger than max_response_bytes={self._max_bytes} ({how})"
        return ResponseTooLargeError(
            f"{request.method} {request.display_url}: {reason}; ask for less (a smaller "
            "page_size), or raise Client(max_response_bytes=...) if such answers are expected",
            method=request.method,
            url=request.display_url,
            request_sent=True,
            reason=reason,
        )

    def _error(
        self,
        cls: type[TransportError],
        request: Request,
        what: str,
        exc: BaseException,
        *,
        sent: bool,
        advice: str = "check the network and the base URL, then try again",
    ) -> TransportError:
        # aiohttp's exceptions may carry the full URL, key included in query-auth mode:
        # they are described here, scrubbed, and never chained (see send).
        said = str(exc)
        detail = redact(
            f"{type(exc).__name__}: {said}" if said else type(exc).__name__, self._api_key
        )
        reason = f"{what} ({detail})"
        return cls(
            f"{request.method} {request.display_url}: {reason}; {advice}",
            method=request.method,
            url=request.display_url,
            request_sent=sent,
            reason=reason,
        )

    async def aclose(self) -> None:
        """Close the owned session (a borrowed one stays open)."""
        self._closed = True
        # Dropped before closing, so a send() from here on gets a ConfigurationError.
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()
