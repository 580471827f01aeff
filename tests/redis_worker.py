"""A worker process for the shared-budget test: N GETs through a RedisLimiter.

Usage: python -m tests.redis_worker BASE_URL API_KEY REDIS_URL N START_AT LIMIT PERIOD
Prints one JSON line with what this process saw.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from redis.asyncio import Redis

from cloudonex_async import Client, RedisLimiter


async def main(argv: list[str]) -> None:
    base_url, api_key, redis_url, count, start_at, limit, period = argv
    redis = Redis.from_url(redis_url)
    limiter = RedisLimiter(
        redis,
        base_url=base_url,
        api_key=api_key,
        rate_limit=int(limit),
        rate_period=float(period),
        bulk_reserve=0.0,
    )
    async with Client(base_url=base_url, api_key=api_key, limiter=limiter) as client:
        await asyncio.sleep(max(0.0, float(start_at) - time.time()))
        await asyncio.gather(*(client.request("GET", "customers") for _ in range(int(count))))
        stats = client.rate_limit
    await redis.aclose()
    print(json.dumps({"rate_limited": stats.rate_limited, "sent": stats.requests_sent}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
