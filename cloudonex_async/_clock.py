"""Time, behind a seam: the limiter and retries read and wait on a Clock.

The system clock is the default; tests and simulations pass a fake one
(:class:`cloudonex_async.testing.FakeClock`) so an hour-long window runs in milliseconds.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Wall-clock time in epoch seconds, and a way to wait on it."""

    def time(self) -> float:
        """Return the current epoch time in seconds."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (cancellable)."""


class SystemClock:
    """The real clock: :func:`time.time` and :func:`asyncio.sleep`."""

    # time.time itself, not a method wrapping it: it is read several times per request.
    time = staticmethod(time.time)

    async def sleep(self, seconds: float) -> None:
        """Wait with :func:`asyncio.sleep`."""
        await asyncio.sleep(max(0.0, seconds))


SYSTEM_CLOCK = SystemClock()
