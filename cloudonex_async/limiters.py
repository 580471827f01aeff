"""Limiters: where a key's budget lives.

- :class:`LocalLimiter` keeps it in this process (the default, shared by every
  ``Client`` of one base URL and key in the process).
- :class:`RedisLimiter` keeps it in Redis, so worker processes on many hosts spend one
  budget together. It needs the ``redis`` extra (``pip install cloudonex-async[redis]``).

Both follow the same rules (see :mod:`cloudonex_async._ratelimit`): a sliding window of
``rate_limit`` per ``rate_period`` until the server announces its window, then the
server's window, never spending past what either side has counted.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import itertools
import os
from typing import TYPE_CHECKING

from ._clock import Clock
from ._protocol import RateLimitInfo
from ._ratelimit import (
    DEFAULT_BULK_RESERVE,
    DEFAULT_RATE_LIMIT,
    DEFAULT_RATE_PERIOD,
    DEFAULT_RESET_MARGIN,
    BaseLimiter,
    LocalLimiter,
    Pacing,
    Priority,
    RateLimitStatus,
    Ticket,
)
from .errors import ConfigurationError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "BaseLimiter",
    "LocalLimiter",
    "Pacing",
    "Priority",
    "RateLimitStatus",
    "RedisLimiter",
    "Ticket",
]

# One script per operation; each runs atomically in Redis. State per budget:
#   KEYS[1] a hash {limit, window_reset, window_end, granted, reported, paused_until}
#   KEYS[2] a sorted set of grant ids scored by grant time (the sliding log)
#   KEYS[3] a sorted set of the grants still in flight (stale ones, from crashed
#           processes, are dropped after STALE_SECONDS)
# ARGV: now, period, margin, default limit, stale seconds, then the operation's own.
# The window rules mirror _ratelimit.Budget line by line.
STALE_SECONDS = 600
_ADVANCE = """
local h, z, f = KEYS[1], KEYS[2], KEYS[3]
local now, period, margin = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', z, '-inf', now - period)
redis.call('ZREMRANGEBYSCORE', f, '-inf', now - tonumber(ARGV[5]))
local s = redis.call('HMGET', h, 'limit', 'window_reset', 'window_end', 'granted', 'reported',
                     'paused_until')
local limit = tonumber(s[1]) or tonumber(ARGV[4])
local window_reset, window_end = tonumber(s[2]), tonumber(s[3])
local granted, reported = tonumber(s[4]) or 0, tonumber(s[5]) or 0
local paused = tonumber(s[6]) or 0
if window_end and now >= window_end + margin then
  local skipped = math.max(1, math.ceil((now - window_end) / period))
  window_end = window_end + skipped * period
  window_reset, granted, reported = nil, redis.call('ZCARD', f), 0
  redis.call('HSET', h, 'window_end', tostring(window_end), 'granted', granted, 'reported', 0)
  redis.call('HDEL', h, 'window_reset')
end
local used
if window_end then used = math.max(granted, reported)
else used = redis.call('ZCOUNT', z, '(' .. tostring(now - period), '+inf') end
local ttl = math.ceil(math.max(period, tonumber(ARGV[5])) * 2000)
redis.call('PEXPIRE', h, ttl)
"""

_TAKE = (
    _ADVANCE
    + """
local reserve = 0
if ARGV[6] == 'bulk' then reserve = math.ceil(limit * tonumber(ARGV[7]) - 1e-9) end
if now < paused then return tostring(paused) end
if limit - used - reserve > 0 then
  redis.call('ZADD', z, now, ARGV[8])
  redis.call('ZADD', f, now, ARGV[8])
  redis.call('HSET', h, 'granted', granted + 1)
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

_GIVE_BACK = (
    _ADVANCE
    + """
redis.call('ZREM', f, ARGV[6])
local t = redis.call('ZSCORE', z, ARGV[6])
if t then
  redis.call('ZREM', z, ARGV[6])
  if (not window_end) or tonumber(t) >= window_end - period then
    redis.call('HSET', h, 'granted', math.max(0, granted - 1))
  end
end
return false
"""
)

_FINISH = (
    _ADVANCE
    + """
local info_limit, remaining = tonumber(ARGV[7]), tonumber(ARGV[8])
local reset_epoch, reset_at = tonumber(ARGV[9]), tonumber(ARGV[10])
if remaining then
  if info_limit and info_limit > 0 then
    limit = info_limit
    redis.call('HSET', h, 'limit', limit)
  end
  local used_now = math.max(0, limit - remaining)
  if (not reset_epoch) or (not reset_at) then
    redis.call('HSET', h, 'reported', math.max(reported, used_now))
  elseif window_reset and reset_epoch == window_reset then
    redis.call('HSET', h, 'reported', math.max(reported, used_now))
  elseif (not window_reset or reset_epoch > window_reset) and reset_at + margin > now then
    local start = reset_at - period
    local ours = redis.call('ZCOUNT', z, tostring(start), '+inf')
    ours = ours + redis.call('ZCOUNT', f, '-inf', '(' .. tostring(start))
    redis.call('HSET', h, 'granted', ours, 'reported', used_now,
               'window_reset', tostring(reset_epoch), 'window_end', tostring(reset_at))
  end
end
redis.call('ZREM', f, ARGV[6])
return false
"""
)

_PAUSE = (
    _ADVANCE
    + """
redis.call('HSET', h, 'paused_until', tostring(math.max(paused, tonumber(ARGV[6]))))
return false
"""
)

_SNAPSHOT = (
    _ADVANCE
    + """
return {tostring(limit), tostring(math.max(0, limit - used)), tostring(window_end or '')}
"""
)


class RedisLimiter(BaseLimiter):
    """A budget shared through Redis by every process that uses the same key.

    Each grant, report and pause is one atomic Lua script, so N workers on one key
    never spend more than the budget together. Hosts must keep their clocks in sync
    (NTP), since each reads its own.

    Args:
        redis: a ``redis.asyncio.Redis`` client (this limiter does not close it).
        base_url, api_key: name the budget; the key is stored only as a SHA-256 digest.
        prefix: the Redis key prefix.
        The rest as for :class:`LocalLimiter`.

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
        super().__init__(
            rate_limit=rate_limit,
            rate_period=rate_period,
            pacing=pacing,
            bulk_reserve=bulk_reserve,
            reset_margin=reset_margin,
            clock=clock,
        )
        if importlib.util.find_spec("redis") is None:  # pragma: no cover - environment
            raise ConfigurationError(
                "RedisLimiter needs redis-py: pip install 'cloudonex-async[redis]'"
            )
        digest = hashlib.sha256(f"{base_url}\n{api_key}".encode()).hexdigest()[:24]
        self._keys = [f"{prefix}:{digest}", f"{prefix}:{digest}:log", f"{prefix}:{digest}:flight"]
        self._redis = redis
        # Unique across every process that shares the key's flight set (pid read per
        # ticket: a limiter built before a fork stays unique in the children).
        self._ticket_ids = (f"{os.getpid()}-{id(self):x}-{n}" for n in itertools.count())
        self._seen: tuple[int, int, float | None] = (rate_limit, rate_limit, None)
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

    async def _run(self, name: str, now: float, *args: str | int) -> object:
        base: list[str | int] = [
            repr(now),
            repr(self.rate_period),
            repr(self.reset_margin),
            self.rate_limit,
            STALE_SECONDS,
        ]
        return await self._scripts[name](keys=self._keys, args=[*base, *args])

    async def _try_take(self, priority: Priority, ticket_id: str, now: float) -> float | None:
        call = asyncio.ensure_future(
            self._run("take", now, priority, repr(self.bulk_reserve), ticket_id)
        )
        try:
            result = await asyncio.shield(call)
        except asyncio.CancelledError:
            # The script may have granted already: let it finish, then undo the grant.
            if (
                not call.cancelled()
                and (await asyncio.gather(call, return_exceptions=True))[0] is None
            ):
                await self._give_back(Ticket(id=ticket_id, granted_at=now, priority=priority))
            raise
        return None if result is None else float(_text(result))

    async def _give_back(self, ticket: Ticket) -> None:
        await self._run("give_back", self.clock.time(), ticket.id)

    async def _finish(self, ticket: Ticket, info: RateLimitInfo | None) -> bool:
        def opt(value: float | None) -> str:
            return repr(value) if value is not None else ""

        if info is None:
            await self._run("finish", self.clock.time(), ticket.id, "", "", "", "")
            return False
        await self._run(
            "finish",
            self.clock.time(),
            ticket.id,
            info.limit if info.limit is not None else "",
            info.remaining,
            opt(info.reset_epoch),
            opt(info.reset_at),
        )
        return info.limit is not None and info.limit > self._seen[0]

    async def _pause(self, until: float) -> None:
        await self._run("pause", self.clock.time(), repr(until))

    async def _snapshot(self, now: float) -> tuple[int, int, float | None]:
        result = await self._run("snapshot", now)
        assert isinstance(result, list)
        limit, remaining, window_end = (_text(v) for v in result)
        self._seen = (
            int(float(limit)),
            int(float(remaining)),
            float(window_end) if window_end else None,
        )
        return self._seen

    def _last_snapshot(self) -> tuple[int, int, float | None]:
        return self._seen

    async def reset(self) -> None:
        """Forget the shared state (for tests and after changing the key's plan)."""
        await self._redis.delete(*self._keys)

    def __repr__(self) -> str:
        return f"RedisLimiter(rate_limit={self.rate_limit}, rate_period={self.rate_period})"


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
