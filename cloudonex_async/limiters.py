"""Limiters: where a key's budget lives.

- :class:`LocalLimiter` keeps it in this process (the default, shared by every
  ``Client`` of one base URL and key in the process).
- :class:`RedisLimiter` keeps it in Redis, so worker processes on many hosts spend one
  budget together. It needs the ``redis`` extra (``pip install cloudonex-async[redis]``).

Both are one queueing limiter (:class:`BaseLimiter`) over a store of the budget, and
both stores follow the same window rules (see :mod:`cloudonex_async._budget`): the
Redis scripts below mirror :class:`~cloudonex_async._budget.Budget` step by step, and
one table of scenarios in the tests runs against both.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import itertools
import os
from typing import TYPE_CHECKING

from ._budget import (
    DEFAULT_RESET_MARGIN,
    READING_SLACK,
    RELATIVE_TOLERANCE,
    BudgetSnapshot,
    Pacing,
    Priority,
    reserve_size,
)
from ._clock import SYSTEM_CLOCK, Clock
from ._config import (
    DEFAULT_BULK_RESERVE,
    DEFAULT_RATE_LIMIT,
    DEFAULT_RATE_PERIOD,
    check_budget_settings,
)
from ._protocol import RateLimitInfo
from ._ratelimit import (
    BaseLimiter,
    BudgetStore,
    Grant,
    LocalLimiter,
    MemoryStore,
    RateLimitStatus,
)
from .errors import ConfigurationError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "BaseLimiter",
    "BudgetStore",
    "Grant",
    "LocalLimiter",
    "MemoryStore",
    "Pacing",
    "Priority",
    "RateLimitStatus",
    "RedisLimiter",
    "RedisStore",
]

# One script per step; each runs atomically in Redis. State per budget:
#   KEYS[1] a hash: limit, window_reset, window_start, window_end, announced_end,
#           last_reset, server_period, period_guess, window_estimate, granted, reported,
#           reported_at, paused_until, next_at
#   KEYS[2] a sorted set of grant ids scored by grant time (the log)
#   KEYS[3] a sorted set of the grants still in flight (stale ones, from crashed
#           processes, are dropped after STALE_SECONDS)
# ARGV: now, period, margin, default limit, stale seconds, bulk reserve, then the step's own.
# Each block mirrors the Budget method named in its comment. A snapshot is limit,
# remaining, window end, the window's length to show, reserve, and "1" if that length
# is confirmed (two Resets told it) or "" if it is estimated.
STALE_SECONDS = 600
_ADVANCE = f"""
local h, z, f = KEYS[1], KEYS[2], KEYS[3]
local now, period, margin = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local fraction, tol = tonumber(ARGV[6]), {RELATIVE_TOLERANCE!r}
local reading_slack = {READING_SLACK!r}
local s = redis.call('HMGET', h, 'limit', 'window_reset', 'window_start', 'window_end',
  'announced_end', 'last_reset', 'server_period', 'granted', 'reported', 'reported_at',
  'paused_until', 'next_at', 'period_guess', 'window_estimate')
local limit = tonumber(s[1]) or tonumber(ARGV[4])
local window_reset, window_start, window_end = tonumber(s[2]), tonumber(s[3]), tonumber(s[4])
local announced_end, last_reset, server_period = tonumber(s[5]), tonumber(s[6]), tonumber(s[7])
local granted, reported = tonumber(s[8]) or 0, tonumber(s[9]) or 0
local reported_at, paused = tonumber(s[10]) or 0, tonumber(s[11]) or 0
local next_at = tonumber(s[12]) or 0
local period_guess, window_estimate = tonumber(s[13]), tonumber(s[14])
local length = server_period or period_guess or period
-- Budget._advance
redis.call('ZREMRANGEBYSCORE', z, '-inf', now - math.max(period, server_period or 0))
redis.call('ZREMRANGEBYSCORE', f, '-inf', now - tonumber(ARGV[5]))
if window_end and now >= window_end + margin then
  local skipped = math.max(1, math.ceil((now - window_end) / length))
  window_start = window_end + (skipped - 1) * length
  window_end = window_end + skipped * length
  window_reset, granted, reported = nil, redis.call('ZCARD', f), 0
  redis.call('HSET', h, 'window_start', tostring(window_start), 'window_end',
    tostring(window_end), 'granted', granted, 'reported', 0)
  redis.call('HDEL', h, 'window_reset')
end
-- Budget.used
local used
if window_end then used = math.max(granted, reported)
else
  used = redis.call('ZCOUNT', z, '(' .. tostring(now - period), '+inf')
  if now < reported_at + period then used = math.max(used, reported) end
end
local reserve = math.ceil(limit * fraction - 1e-9)
local ttl = math.ceil(math.max(period, length, tonumber(ARGV[5])) * 2000)
redis.call('PEXPIRE', h, ttl)
local function snapshot()
  local confirmed = ''
  if server_period then confirmed = '1' end
  return {{tostring(limit), tostring(math.max(0, limit - used)), tostring(window_end or ''),
    tostring(server_period or window_estimate or period), tostring(reserve), confirmed}}
end
"""

# Budget.try_take. ARGV[7] priority, ARGV[8] grant id, ARGV[9] "smooth" or "burst".
_TAKE = (
    _ADVANCE
    + """
if now < paused then return tostring(paused) end
if ARGV[9] == 'smooth' and now < next_at then return tostring(next_at) end
local hold = 0
if ARGV[7] == 'bulk' then hold = reserve end
if limit - used - hold > 0 then
  redis.call('ZADD', z, now, ARGV[8])
  redis.call('ZADD', f, now, ARGV[8])
  redis.call('HSET', h, 'granted', granted + 1)
  if ARGV[9] == 'smooth' then
    local time_left = length
    if window_end and window_end > now then time_left = window_end - now end
    redis.call('HSET', h, 'next_at', tostring(now + time_left / math.max(1, limit - used)))
  end
  redis.call('PEXPIRE', z, ttl)
  redis.call('PEXPIRE', f, ttl)
  return false
end
if window_end then return tostring(window_end + margin) end
local oldest = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
if oldest[2] then return tostring(tonumber(oldest[2]) + period) end
return tostring(now)
"""
)

# Budget.give_back. ARGV[7] grant id.
_GIVE_BACK = (
    _ADVANCE
    + """
redis.call('ZREM', f, ARGV[7])
local t = redis.call('ZSCORE', z, ARGV[7])
if t then
  redis.call('ZREM', z, ARGV[7])
  if (not window_start) or tonumber(t) >= window_start then
    redis.call('HSET', h, 'granted', math.max(0, granted - 1))
  end
end
return false
"""
)

# Budget.observe and Budget.finish. ARGV[7] grant id, then limit, remaining, reset
# epoch, reset at, relative ("1" or "") of the answer (empty strings when absent).
_FINISH = (
    _ADVANCE
    + """
local info_limit, remaining = tonumber(ARGV[8]), tonumber(ARGV[9])
local epoch, reset_at, relative = tonumber(ARGV[10]), tonumber(ARGV[11]), ARGV[12] == '1'
if remaining then
  if info_limit and info_limit > 0 then
    limit = info_limit
    redis.call('HSET', h, 'limit', limit)
  end
  local used_now = math.max(0, limit - remaining)
  local slack = 0
  if relative then slack = tol end
  if epoch and window_reset and (epoch == window_reset or
      (relative and math.abs(epoch - window_reset) <= tol)) then
    reported = math.max(reported, used_now)
    redis.call('HSET', h, 'reported', reported)
  elseif (not epoch) or (not reset_at) then
    reported = math.max(reported, used_now)
    redis.call('HSET', h, 'reported', reported, 'reported_at', tostring(now))
  elseif (last_reset and epoch < last_reset - slack) or reset_at + margin <= now then
    -- A late answer, from a window already over. Its request was counted in the
    -- current window if it was still in flight when this one began: it was not.
    local t = tonumber(redis.call('ZSCORE', f, ARGV[7]))
    if t and window_start and t < window_start then
      granted = math.max(0, granted - 1)
      redis.call('HSET', h, 'granted', granted)
    end
  else
    if not last_reset then
      period_guess = math.min(period, math.max(2 * (reset_at - now), 1.0))
      -- estimate_window: the length to show until two Resets tell it
      local left = reset_at - now
      if limit == tonumber(ARGV[4]) and left <= period + reading_slack then
        window_estimate = period
      else
        window_estimate = math.max(2 * left, 1.0)
        if left <= period then window_estimate = math.min(window_estimate, period) end
      end
      redis.call('HSET', h, 'period_guess', tostring(period_guess),
        'window_estimate', tostring(window_estimate))
      length = server_period or period_guess
    end
    if last_reset and epoch - last_reset > 2 * slack then
      local step = epoch - last_reset
      if server_period then server_period = math.min(server_period, step)
      else server_period = step end
      redis.call('HSET', h, 'server_period', tostring(server_period))
      length = server_period
    end
    local start = reset_at - length
    if announced_end then start = math.max(start, announced_end) end
    granted = redis.call('ZCOUNT', z, tostring(start), '+inf')
    granted = granted + redis.call('ZCOUNT', f, '-inf', '(' .. tostring(start))
    reported, window_end = used_now, reset_at
    redis.call('HSET', h, 'granted', granted, 'reported', used_now,
      'reported_at', tostring(now), 'window_reset', tostring(epoch),
      'window_start', tostring(start), 'window_end', tostring(reset_at),
      'announced_end', tostring(reset_at), 'last_reset', tostring(epoch))
  end
  if window_end then used = math.max(granted, reported) else used = math.max(used, reported) end
  reserve = math.ceil(limit * fraction - 1e-9)
end
redis.call('ZREM', f, ARGV[7])
return snapshot()
"""
)

# Budget.pause. ARGV[7] until.
_PAUSE = (
    _ADVANCE
    + """
redis.call('HSET', h, 'paused_until', tostring(math.max(paused, tonumber(ARGV[7]))))
return false
"""
)

# Budget.snapshot.
_SNAPSHOT = _ADVANCE + "\nreturn snapshot()\n"


class RedisStore:
    """A budget store in Redis, shared by every process that uses the same key.

    Each step is one atomic Lua script. The API key is stored only as part of a
    SHA-256 digest naming the keys.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        base_url: str,
        api_key: str,
        prefix: str,
        rate_limit: int,
        rate_period: float,
        pacing: Pacing,
        bulk_reserve: float,
        reset_margin: float,
    ) -> None:
        digest = hashlib.sha256(f"{base_url}\n{api_key}".encode()).hexdigest()[:24]
        self.keys = [f"{prefix}:{digest}", f"{prefix}:{digest}:log", f"{prefix}:{digest}:flight"]
        self._redis = redis
        self._base = [
            "",  # now, filled in per call
            repr(float(rate_period)),
            repr(float(reset_margin)),
            str(rate_limit),
            str(STALE_SECONDS),
            repr(float(bulk_reserve)),
        ]
        self._pacing = pacing
        self._seen = BudgetSnapshot(
            rate_limit,
            rate_limit,
            None,
            float(rate_period),
            reserve_size(rate_limit, bulk_reserve),
        )
        self._scripts = {
            name: redis.register_script(source)
            for name, source in {
                "take": _TAKE,
                "give_back": _GIVE_BACK,
                "finish": _FINISH,
                "pause": _PAUSE,
                "snapshot": _SNAPSHOT,
            }.items()
        }

    async def _run(self, name: str, now: float, *args: str) -> object:
        base = [repr(now), *self._base[1:]]
        return await self._scripts[name](keys=self.keys, args=[*base, *args])

    async def take(self, priority: Priority, grant_id: str, now: float) -> float | None:
        """See :class:`BudgetStore`; a cancelled call gives back what it may have taken."""
        call = asyncio.ensure_future(self._run("take", now, priority, grant_id, self._pacing))
        try:
            result = await asyncio.shield(call)
        except asyncio.CancelledError:
            # The script may have granted already: let it finish, then undo the grant.
            if (
                not call.cancelled()
                and (await asyncio.gather(call, return_exceptions=True))[0] is None
            ):
                await self.give_back(grant_id, now, now)
            raise
        return None if result is None else float(_text(result))

    async def give_back(self, grant_id: str, granted_at: float, now: float) -> None:
        """See :class:`BudgetStore`."""
        await self._run("give_back", now, grant_id)

    async def finish(
        self, grant_id: str, granted_at: float, info: RateLimitInfo | None, now: float
    ) -> None:
        """See :class:`BudgetStore`; also refreshes what :meth:`last_snapshot` says."""
        if info is None:
            fields = ["", "", "", "", ""]
        else:
            fields = [
                "" if info.limit is None else str(info.limit),
                str(info.remaining),
                "" if info.reset_epoch is None else repr(info.reset_epoch),
                "" if info.reset_at is None else repr(info.reset_at),
                "1" if info.relative else "",
            ]
        self._seen = _snapshot(await self._run("finish", now, grant_id, *fields))

    async def pause(self, until: float, now: float) -> None:
        """See :class:`BudgetStore`."""
        await self._run("pause", now, repr(until))

    async def snapshot(self, now: float) -> BudgetSnapshot:
        """See :class:`BudgetStore`."""
        self._seen = _snapshot(await self._run("snapshot", now))
        return self._seen

    def last_snapshot(self) -> BudgetSnapshot:
        """See :class:`BudgetStore`: the budget as of this process's last step."""
        return self._seen

    async def reset(self) -> None:
        """Forget the shared state (for tests and after changing the key's plan)."""
        await self._redis.delete(*self.keys)


def _snapshot(result: object) -> BudgetSnapshot:
    assert isinstance(result, list)
    limit, remaining, window_end, length, reserve, confirmed = (_text(v) for v in result)
    return BudgetSnapshot(
        int(float(limit)),
        int(float(remaining)),
        float(window_end) if window_end else None,
        float(length),
        int(float(reserve)),
        confirmed == "1",
    )


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisLimiter(BaseLimiter):
    """A budget shared through Redis by every process that uses the same key.

    Each grant, report and pause is one atomic Lua script, so N workers on one key
    never spend more than the budget together. Hosts must keep their clocks in sync
    (NTP), since each reads its own.

    Args:
        redis: a ``redis.asyncio.Redis`` client (this limiter does not close it).
        base_url: names the budget, with ``api_key``.
        api_key: names the budget; it is stored only as a SHA-256 digest.
        prefix: the Redis key prefix.
        rate_limit: requests per ``rate_period`` before the server has said otherwise.
        rate_period: the window in seconds, until the server's is known.
        pacing: ``"burst"`` or ``"smooth"``, as for :class:`LocalLimiter`.
        bulk_reserve: the fraction of each window that bulk calls leave to interactive ones.
        reset_margin: seconds past Reset before the window rolls over (clock granularity).
        clock: the time source (inject a fake one in tests).

    Example::

        from redis.asyncio import Redis
        limiter = RedisLimiter(Redis(), base_url=URL, api_key=KEY)
        async with Client(base_url=URL, api_key=KEY, limiter=limiter) as client: ...
    """

    poll_seconds = 0.5

    def __init__(
        self,
        redis: Redis,
        *,
        base_url: str,
        api_key: str,
        prefix: str = "cloudonex_async:budget",
        rate_limit: int = DEFAULT_RATE_LIMIT,
        rate_period: float = DEFAULT_RATE_PERIOD,
        pacing: Pacing = "burst",
        bulk_reserve: float = DEFAULT_BULK_RESERVE,
        reset_margin: float = DEFAULT_RESET_MARGIN,
        clock: Clock | None = None,
    ) -> None:
        if importlib.util.find_spec("redis") is None:  # pragma: no cover - environment
            raise ConfigurationError(
                "RedisLimiter needs redis-py: pip install 'cloudonex-async[redis]'"
            )
        check_budget_settings(rate_limit, rate_period, pacing, bulk_reserve)
        store = RedisStore(
            redis,
            base_url=base_url,
            api_key=api_key,
            prefix=prefix,
            rate_limit=rate_limit,
            rate_period=rate_period,
            pacing=pacing,
            bulk_reserve=bulk_reserve,
            reset_margin=reset_margin,
        )
        super().__init__(
            store,
            rate_limit=rate_limit,
            rate_period=rate_period,
            pacing=pacing,
            bulk_reserve=bulk_reserve,
            reset_margin=reset_margin,
            clock=clock or SYSTEM_CLOCK,
        )
        self._redis_store = store
        # Unique across every process that shares the key's flight set (the pid is
        # read per id, so a limiter built before a fork stays unique in the children).
        self._grant_ids = (f"{os.getpid()}-{id(self):x}-{n}" for n in itertools.count())

    async def reset(self) -> None:
        """Forget the shared state (for tests and after changing the key's plan)."""
        await self._redis_store.reset()

    def __repr__(self) -> str:
        return f"RedisLimiter(rate_limit={self.rate_limit}, rate_period={self.rate_period})"
