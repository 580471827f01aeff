"""Close a Client as soon as the process is told to stop, ahead of the web server.

A web server stops gracefully: on Ctrl-C (SIGINT) or SIGTERM it stops accepting, waits
for the requests in progress, and only then runs the application's shutdown code,
where the Client is closed (uvicorn runs the lifespan shutdown after the requests
finish). A handler waiting for the budget would hold that wait until Reset, up to an
hour. :func:`close_on_signals` closes the client the moment the signal arrives, which
wakes every call waiting for the budget or a concurrency slot with a
``ConfigurationError``, and then passes the signal on to the handler that was there
before (the server's), so the server stops as it always does, only without waiting.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable, Iterable
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["SignalCloser", "close_on_signals"]

logger = logging.getLogger("cloudonex_async")

# What signal.getsignal() returns and signal.signal() takes.
_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class SignalCloser:
    """The handlers :func:`close_on_signals` installed; undo them with :meth:`undo`.

    ``async with`` it (in the block where the client lives) undoes them on the way out
    and waits for a close the signal started. Off the main thread it holds nothing.
    """

    def __init__(self, client: Client, loop: asyncio.AbstractEventLoop | None) -> None:
        self._client = client
        self._loop = loop
        self._previous: dict[int, _Handler] = {}
        self._installed = False
        self._closing: asyncio.Task[None] | None = None
        self._handler = self._on_signal  # one bound method: compared by identity

    def _install(self, signals: Iterable[int]) -> None:
        self._installed = True
        try:
            for signum in dict.fromkeys(signals):
                previous = signal.getsignal(signum)
                if previous is None:
                    continue  # installed outside Python: it could not be put back
                signal.signal(signum, self._handler)
                self._previous[signum] = previous
        except BaseException:
            self.undo()  # a signal that cannot be handled: none is
            raise
        self._installed = bool(self._previous)

    @property
    def signals(self) -> tuple[int, ...]:
        """The signals handled now (empty once undone, and off the main thread)."""
        return tuple(self._previous) if self._installed else ()

    def undo(self) -> None:
        """Put the previous handlers back (idempotent).

        Called by itself once a close it started is over. A handler installed later
        on top of this one is left in place; if it passes signals on, they go straight
        to the previous handlers.
        """
        if not self._installed:
            return
        self._installed = False
        for signum, previous in self._previous.items():
            if signal.getsignal(signum) is self._handler:
                signal.signal(signum, previous)

    async def __aenter__(self) -> SignalCloser:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.undo()
        if self._closing is not None:
            await asyncio.shield(self._closing)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        loop = self._loop
        if self._installed and self._closing is None and loop is not None:
            if self._client.closed:
                self.undo()  # closed some other way: step aside
            else:
                try:
                    loop.call_soon_threadsafe(self._start_closing, loop)
                except RuntimeError:
                    pass  # the loop is closed: there is nothing left to wake
        _chain(self._previous.get(signum, signal.SIG_DFL), signum, frame)

    def _start_closing(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._closing is None:  # a second signal before this ran is the same request
            self._closing = loop.create_task(self._close())

    async def _close(self) -> None:
        try:
            await self._client.close()
        except Exception:
            logger.exception("closing the CloudOnex client on a signal failed")
        finally:
            self.undo()


def _chain(previous: _Handler, signum: int, frame: FrameType | None) -> None:
    """Do what the previous handler would have done with the signal."""
    if callable(previous):
        previous(signum, frame)  # Python's default for SIGINT raises KeyboardInterrupt
    elif previous == signal.SIG_DFL:
        signal.signal(signum, signal.SIG_DFL)  # the default action ends the process
        signal.raise_signal(signum)
    # SIG_IGN: ignored, as before


def close_on_signals(
    client: Client, signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM)
) -> SignalCloser:
    """Close ``client`` as soon as one of ``signals`` arrives, then pass the signal on.

    For a web server that waits for its requests before running the application's
    shutdown code (uvicorn, and so FastAPI): call it where the client is created, in
    the server's event loop and main thread (a lifespan, a startup hook)::

        async with Client() as client:
            async with close_on_signals(client):
                yield  # serve

    On a signal the client is closed in its event loop, which wakes every call waiting
    for the budget or a concurrency slot at once with ``ConfigurationError`` (and the
    client's ``closed`` is then true); then the handler that was installed before is
    called (uvicorn's starts its graceful shutdown), or the signal's default action
    is taken: the signal is never swallowed. The previous handlers are put back once
    the close is over, or by :meth:`SignalCloser.undo`, or on leaving ``async with``.

    Off the main thread (where Python cannot install signal handlers) it does nothing.
    With aiohttp.web, an ``on_shutdown`` callback that closes the client does the same
    job without signals: aiohttp runs it before waiting for its handlers.

    Args:
        client: the client to close (open).
        signals: the signals to act on; by default SIGINT (Ctrl-C) and SIGTERM.

    Raises:
        ConfigurationError: the client is closed already, or no event loop is running.
    """
    if client.closed:
        raise ConfigurationError("this Client is closed already; close_on_signals needs it open")
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise ConfigurationError(
            "call close_on_signals in the client's event loop (in an async function)"
        ) from None
    if threading.current_thread() is not threading.main_thread():
        return SignalCloser(client, None)
    closer = SignalCloser(client, loop)
    closer._install(signals)
    return closer
