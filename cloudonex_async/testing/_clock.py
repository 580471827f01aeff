"""A fake clock for tests and simulations: time moves only when someone sleeps."""

from __future__ import annotations

import asyncio


class FakeClock:
    """An auto-advancing clock: ``sleep(d)`` moves time forward by ``d`` at once.

    Pass it to ``Client(clock=...)``, ``LocalLimiter(clock=...)`` and
    ``SandboxServer(clock=...)`` to run an hour-long rate-limit window in milliseconds.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self.slept = 0.0

    def time(self) -> float:
        """Return the fake epoch time."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self._now += max(0.0, seconds)

    async def sleep(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and let other tasks run."""
        seconds = max(0.0, seconds)
        self._now += seconds
        self.slept += seconds
        await asyncio.sleep(0)
