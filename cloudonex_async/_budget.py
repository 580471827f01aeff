"""One key's request budget, as a pure function of grants, server reports and time.

:class:`Budget` holds no I/O and reads no clock: every method takes ``now``. The rules:

- Before any answer has announced a window, at most ``limit`` grants fall in any
  ``period`` seconds (a sliding log of grant times).
- Once an answer carries ``X-RateLimit-*``, the budget follows the server's window: the
  requests used are the larger of the grants made since the window began and what the
  server reports (``Limit - Remaining``), so answers arriving out of order never make
  it over-spend. A new window begins no earlier than the end of the last one the server
  announced, and the window's length is learned from successive Reset values, so a
  server with 5-second windows is followed even when ``period`` says an hour.
- At Reset (plus a small margin for clock granularity) the window rolls over to a full
  budget, less the requests still in flight: the server may count those in the new one.
- Smooth pacing is a rule too: after each grant, the next may not come before the time
  left in the window divided by the requests left in it.
- A pause (after a 429) stops every grant until it ends; bulk grants leave a reserve.

What the budget shows as the window's length (``window_seconds`` of a snapshot) is the
best figure known, and ``window_confirmed`` says whether it is the server's:

- Before any Reset: the configured ``period``, not confirmed.
- After one Reset, ``r`` seconds ahead: an estimate, not confirmed. If the limit in
  force is still the configured one (the server announced the same, or none) and
  ``r`` is within ``period`` (give or take :data:`READING_SLACK`), the server has not
  contradicted the configuration: ``period``. Otherwise twice ``r`` (an answer at a
  random moment of a window finds half of it left, on average), no longer than
  ``period`` unless ``r`` itself is.
- Once two successive Resets have told the length: the server's, confirmed.

The window bookkeeping above does not use that estimate: until two Resets tell the
length, it assumes its own guess (twice ``r``, never more than ``period``) for the
window after the first, and for smooth pacing.

:class:`MemoryStore` keeps a Budget for one process; the Redis store
(:mod:`cloudonex_async.limiters`) keeps the same state in Redis, by the same rules.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Literal

import attrs

from ._protocol import MIN_CORRECTED_SKEW, RateLimitInfo

Priority = Literal["interactive", "bulk"]
Pacing = Literal["burst", "smooth"]

DEFAULT_RESET_MARGIN = 0.05
# Reset values sent as "seconds from now" wobble by a second between answers of one
# window (each is rounded where it is read); epochs within this much name one window.
RELATIVE_TOLERANCE = 1.5
#: How much further a Reset read on the local clock may seem than the window reaches: an
#: uncorrected clock skew (under two seconds) plus a Reset rounded to the second.
READING_SLACK = MIN_CORRECTED_SKEW + RELATIVE_TOLERANCE


def reserve_size(limit: int, fraction: float) -> int:
    """Requests of each window that bulk calls leave to interactive ones.

    (The epsilon keeps 1000 * 0.1 at 100, not 101; the Redis script does the same.)
    """
    return math.ceil(limit * fraction - 1e-9)


def estimate_window(period: float, agrees: bool, time_left: float) -> float:
    """The window's length as best told by one Reset, ``time_left`` seconds ahead.

    ``agrees``: the limit in force is the configured one. Then, while the Reset lies
    within ``period`` (give or take :data:`READING_SLACK`), nothing contradicts the
    configured window: ``period``. Otherwise twice the time left (an answer arriving
    at a random moment of a window finds, on average, half of it left), no longer than
    ``period`` unless the Reset itself is further. (The Redis store does the same.)
    """
    if agrees and time_left <= period + READING_SLACK:
        return period
    guess = max(2 * time_left, 1.0)
    return min(guess, period) if time_left <= period else guess


@attrs.frozen
class BudgetSnapshot:
    """The budget at one moment.

    Attributes:
        limit: requests per window. remaining: requests left in it (by the larger of
            the two counts). window_end: local epoch seconds the window ends (None
            before the server announced one). window_seconds: the window's length, the
            best figure known: the server's once two Resets have told it, else an
            estimate from the one Reset seen, else the configured period (see the
            module docstring). reserve: requests of each window bulk work leaves to
            interactive calls. window_confirmed: whether ``window_seconds`` is the
            server's (two successive Resets told it) rather than an estimate.
    """

    limit: int
    remaining: int
    window_end: float | None
    window_seconds: float
    reserve: int
    window_confirmed: bool = False


@attrs.define
class Budget:
    """One key's budget (see the module docstring for the rules)."""

    limit: int
    period: float
    bulk_reserve: float = 0.0
    smooth: bool = False
    margin: float = DEFAULT_RESET_MARGIN
    window_reset: float | None = None  # the server's Reset value naming the window we follow
    window_start: float | None = None  # local time the current window began
    window_end: float | None = None  # local time it ends; None: no server window yet
    announced_end: float | None = None  # end of the last window a server answer named
    last_reset: float | None = None  # the newest Reset value seen
    server_period: float | None = None  # the server's window length, once two Resets told
    period_guess: float | None = None  # until then: twice the time to the first Reset
    window_estimate: float | None = None  # until then, the length shown (estimate_window)
    granted: int = 0  # grants counted in the current window
    reported: int = 0  # the most the server said was used in it (Limit - Remaining)
    reported_at: float = 0.0
    paused_until: float = 0.0
    next_at: float = 0.0  # smooth pacing: no grant before this
    log: deque[float] = attrs.field(factory=deque)  # grant times, newest last
    in_flight: list[float] = attrs.field(factory=list)  # grant times of unfinished requests
    held_back: int = attrs.field(init=False, default=0)  # the bulk reserve, in requests
    configured_limit: int = attrs.field(init=False, default=0)  # ``limit`` as first given

    def __attrs_post_init__(self) -> None:
        self.held_back = reserve_size(self.limit, self.bulk_reserve)
        self.configured_limit = self.limit

    @property
    def window_length(self) -> float:
        """The length the window bookkeeping assumes: the server's, else a guess, else the period.

        Before a second Reset tells the length, the first one bounds it from below: an
        answer that arrives at a random moment of a window of length L finds, on
        average, L / 2 left, so twice the time left is the guess (never more than the
        configured period). This is not the length to show: see :attr:`window_seconds`.
        """
        return self.server_period or self.period_guess or self.period

    @property
    def window_seconds(self) -> float:
        """The window's length to show: the server's, else an estimate, else the period.

        The estimate is :func:`estimate_window` of the first Reset (see the module
        docstring); :attr:`window_confirmed` says which it is.
        """
        return self.server_period or self.window_estimate or self.period

    @property
    def window_confirmed(self) -> bool:
        """Whether two successive Resets have told the window's length."""
        return self.server_period is not None

    def reserve(self, priority: Priority) -> int:
        """Requests of the window that ``priority`` may not touch."""
        return self.held_back if priority == "bulk" else 0

    def used(self, now: float) -> int:
        """Requests counted against the current window."""
        self._advance(now)
        if self.window_end is None:
            reported = self.reported if now < self.reported_at + self.period else 0
            return max(len(self.log), reported)
        return max(self.granted, self.reported)

    def try_take(self, now: float, priority: Priority = "interactive") -> float | None:
        """Count one grant and return None, or return the local time to try again."""
        if now < self.paused_until:
            return self.paused_until
        if self.smooth and now < self.next_at:
            return self.next_at
        end = self.window_end
        if end is not None and now < end + self.margin:
            used = self.granted if self.granted > self.reported else self.reported
        else:
            used = self.used(now)  # rolls the window over, trims the log
        if self.limit - used - (self.held_back if priority == "bulk" else 0) <= 0:
            return self.next_refill(now)
        self.log.append(now)
        self.in_flight.append(now)
        self.granted += 1
        if self.smooth:
            self.next_at = now + self._interval(now, used + 1)
        return None

    def next_refill(self, now: float) -> float:
        """The local time at which more budget may become available."""
        self._advance(now)
        if now < self.paused_until:
            return self.paused_until
        if self.window_end is not None:
            return self.window_end + self.margin
        return self.log[0] + self.period if self.log else now

    def finish(
        self, granted_at: float, info: RateLimitInfo | None = None, now: float = 0.0
    ) -> None:
        """End the flight of the request granted at ``granted_at``, with its answer's budget."""
        if info is not None:
            if (
                info.reset_epoch is not None
                and info.reset_epoch == self.window_reset
                and (info.limit is None or info.limit == self.limit)
            ):
                # The window we follow, unchanged: the per-request path of observe().
                used = self.limit - info.remaining
                if used > self.reported:
                    self.reported = used
            else:
                self.observe(info, now, granted_at)
        try:
            self.in_flight.remove(granted_at)
        except ValueError:
            pass

    def give_back(self, granted_at: float) -> None:
        """Undo a grant whose request was never sent."""
        try:
            self.in_flight.remove(granted_at)
        except ValueError:
            pass
        try:
            self.log.remove(granted_at)
        except ValueError:
            pass
        if self.window_start is None or granted_at >= self.window_start:
            self.granted = max(0, self.granted - 1)

    def observe(self, info: RateLimitInfo, now: float, granted_at: float | None = None) -> None:
        """Take in the budget an answer announced (to the request granted at ``granted_at``)."""
        if info.limit is not None and info.limit > 0 and info.limit != self.limit:
            self.limit = info.limit
            self.held_back = reserve_size(self.limit, self.bulk_reserve)
        used = max(0, self.limit - info.remaining)
        epoch = info.reset_epoch
        if (
            epoch is not None
            and self.window_reset is not None
            and (
                epoch == self.window_reset
                or (info.relative and abs(epoch - self.window_reset) <= RELATIVE_TOLERANCE)
            )
        ):
            # The window we follow (the usual case). Should it have just ended, the
            # next _advance drops this report along with the rest of the window.
            if used > self.reported:
                self.reported = used
            return
        self._advance(now)
        if epoch is None or info.reset_at is None:
            self.reported, self.reported_at = max(self.reported, used), now
            return
        if (
            self.last_reset is not None
            and epoch < self.last_reset - (RELATIVE_TOLERANCE if info.relative else 0.0)
        ) or info.reset_at + self.margin <= now:
            # A late answer, from a window already over. Its request was counted in the
            # current window if it was still in flight when this one began: it was not.
            if (
                granted_at is not None
                and self.window_start is not None
                and granted_at < self.window_start
                and granted_at in self.in_flight
            ):
                self.granted = max(0, self.granted - 1)
            return
        if self.last_reset is not None and epoch - self.last_reset > (
            2 * RELATIVE_TOLERANCE if info.relative else 0.0
        ):
            step = epoch - self.last_reset
            self.server_period = (
                step if self.server_period is None else min(self.server_period, step)
            )
        if self.last_reset is None:
            self.period_guess = min(self.period, max(2 * (info.reset_at - now), 1.0))
            agrees = self.limit == self.configured_limit
            self.window_estimate = estimate_window(self.period, agrees, info.reset_at - now)
        self.last_reset = epoch
        # A window we had not seen. It began no earlier than the end of the last one the
        # server named; count our grants since then, plus those still in flight from
        # before (the server may count them in this window), against its report.
        start = info.reset_at - self.window_length
        if self.announced_end is not None:
            start = max(start, self.announced_end)
        self.granted = sum(1 for t in self.log if t >= start)
        self.granted += sum(1 for t in self.in_flight if t < start)
        self.reported, self.reported_at = used, now
        self.window_reset = epoch
        self.window_start = start
        self.window_end = self.announced_end = info.reset_at

    def pause(self, until: float) -> None:
        """Stop all grants until ``until`` (after a 429)."""
        self.paused_until = max(self.paused_until, until)

    def snapshot(self, now: float) -> BudgetSnapshot:
        """The budget as it stands at ``now``."""
        remaining = max(0, self.limit - self.used(now))
        return BudgetSnapshot(
            self.limit,
            remaining,
            self.window_end,
            self.window_seconds,
            self.held_back,
            self.window_confirmed,
        )

    # -- internals ------------------------------------------------------------------

    def _advance(self, now: float) -> None:
        log = self.log
        horizon = now - max(self.period, self.server_period or 0.0)
        while log and log[0] <= horizon:
            log.popleft()
        end = self.window_end
        if end is not None and now >= end + self.margin:
            # The server's window is over. Until an answer names the next one, assume
            # it follows on directly, as long as the last, with the whole budget.
            length = self.window_length
            skipped = max(1, math.ceil((now - end) / length))
            self.window_start = end + (skipped - 1) * length
            self.window_end = end + skipped * length
            self.window_reset = None
            self.granted = len(self.in_flight)
            self.reported = 0

    def _interval(self, now: float, used: int) -> float:
        """Smooth pacing: the time left in the window over the requests left in it."""
        end = self.window_end
        time_left = end - now if end is not None and end > now else self.window_length
        return time_left / max(1, self.limit - used + 1)
