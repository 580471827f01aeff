"""A fake clock for tests and simulations: time moves only when someone sleeps or says so."""

from __future__ import annotations

import asyncio


class FakeClock:
    """A clock under the test's control.

    By default it advances itself: ``sleep(d)`` moves time forward by ``d`` at once, so
    an hour-long rate-limit window runs in milliseconds. With ``auto_advance=False``,
    ``sleep(d)`` waits until :meth:`advance` has moved time past its deadline, so a
    test can look at who is waiting at any moment.

    Pass it to ``LocalLimiter(clock=...)`` (a Client takes its limiter's clock) and
    ``SandboxServer(clock=...)``.
    """

    def __init__(self, start: float = 1_700_000_000.0, *, auto_advance: bool = True) -> None:
        self._now = start
        self.auto_advance = auto_advance
        self.slept = 0.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def time(self) -> float:
        """Return the fake epoch time."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward, waking the sleepers whose deadline has come."""
        self._now += max(0.0, seconds)
        due = [(d, f) for d, f in self._sleepers if d <= self._now]
        self._sleepers = [(d, f) for d, f in self._sleepers if d > self._now]
        for _, future in due:
            if not future.done():
                future.set_result(None)

    def advance_to_next(self) -> bool:
        """Move time to the earliest sleeper's deadline and wake it; False if none sleeps."""
        deadlines = [d for d, f in self._sleepers if not f.done()]
        if not deadlines:
            return False
        self.advance(min(deadlines) - self._now)
        return True

    @property
    def sleeping(self) -> int:
        """How many callers wait for time to move (with ``auto_advance=False``)."""
        return sum(1 for _, f in self._sleepers if not f.done())

    async def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass: at once, or once :meth:`advance` says so."""
        seconds = max(0.0, seconds)
        self.slept += seconds
        if self.auto_advance:
            self._now += seconds
            await asyncio.sleep(0)
            return
        deadline = self._now + seconds
        if deadline <= self._now:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((deadline, future))
        try:
            await future
        finally:
            self._sleepers = [(d, f) for d, f in self._sleepers if f is not future]
