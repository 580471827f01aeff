"""The only module that talks to aiohttp: send a Request, get a RawResponse.

aiohttp and asyncio failures are translated here into :class:`TransportError`
and its subclasses, with the API key scrubbed from every message. CancelledError
always passes through untouched.
"""

from __future__ import annotations

import asyncio
import ssl as _ssl
from collections.abc import Mapping

import aiohttp

from ._protocol import RawResponse, Request, redact
from .errors import ConfigurationError, RequestTimeoutError, TransportError


class Transport:
    """Owns (or borrows) one pooled ``aiohttp.ClientSession`` and sends requests on it.

    The session and its connector are created lazily inside the running loop, as
    aiohttp requires; a session passed in is borrowed and never closed here.
    ``headers`` go on every request: set once on an owned session, merged into each
    request on a borrowed one.
    """

    def __init__(
        self,
        *,
        api_key: str,
        headers: Mapping[str, str],
        timeout: float,
        connect_timeout: float | None,
        max_connections: int,
        ssl: _ssl.SSLContext | bool | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._api_key = api_key
        self._headers = dict(headers)
        # sock_connect bounds opening a TCP connection; waiting for a pooled one falls
        # under the total (a per-request "connect" timer would cost every request).
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout)
        self._max_connections = max_connections
        self._ssl: _ssl.SSLContext | bool = True if ssl is None else ssl
        self._session = session
        self._owns_session = session is None
        self._closed = False

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
        return self._session

    async def send(self, request: Request) -> RawResponse:
        """Send ``request`` and read the whole answer.

        Raises:
            TransportError: no complete answer; ``request_sent`` is False when the
                connection failed before anything was written.
            RequestTimeoutError: the timeout passed.
        """
        session = self._session or self._get_session()
        headers = request.headers
        if not self._owns_session:
            headers = {**self._headers, **headers}
        try:
            async with session.request(
                request.method,
                request.url,
                params=request.params or None,
                headers=headers or None,
                data=request.body,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                body = await response.read()
                return RawResponse(
                    status=response.status,
                    headers=response.headers,  # a case-insensitive read-only view
                    body=body,
                    method=request.method,
                    url=request.display_url,
                    request=request,
                )
        except asyncio.CancelledError:
            raise
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            error = self._error(
                RequestTimeoutError, request, "timed out waiting for the answer", exc, sent=True
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

    def _error(
        self,
        cls: type[TransportError],
        request: Request,
        what: str,
        exc: BaseException,
        *,
        sent: bool,
    ) -> TransportError:
        # aiohttp's exceptions may carry the full URL, key included in query-auth mode:
        # they are described here, scrubbed, and never chained (see send).
        detail = redact(f"{type(exc).__name__}: {exc}", self._api_key)
        reason = f"{what} ({detail})"
        return cls(
            f"{request.method} {request.display_url}: {reason}; "
            "check the network and the base URL, then try again",
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
