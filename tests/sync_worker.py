"""A sync in its own process, for the crash tests.

Usage: python -m tests.sync_worker BASE_URL API_KEY file|redis JOURNAL COUNT
Syncs COUNT customers (see ``wanted``) by email with a file journal (JOURNAL is a path)
or a Redis journal (JOURNAL is a redis:// URL); prints the summary when done.
"""

from __future__ import annotations

import asyncio
import sys

from cloudonex_async import Client, FileJournal, Journal, LocalLimiter, RedisJournal


def wanted(count: int) -> list[dict[str, str]]:
    """The input: every customer with its phone at "v2"."""
    return [
        {"account": f"Person {n}", "email": f"person{n}@example.com", "phone": "v2"}
        for n in range(count)
    ]


async def main(base_url: str, api_key: str, kind: str, where: str, count: int) -> None:
    journal: Journal
    redis = None
    if kind == "redis":
        from redis.asyncio import Redis

        redis = Redis.from_url(where)
        journal = RedisJournal(redis, "crash-test")
    else:
        journal = FileJournal(where)
    try:
        async with Client(base_url=base_url, api_key=api_key, limiter=LocalLimiter()) as client:
            result = await client.customers.sync(
                wanted(count), key="email", journal=journal, batch_size=10, concurrency=2
            )
        print(result.summary(), flush=True)
    finally:
        if redis is not None:
            await redis.aclose()


if __name__ == "__main__":
    base, key, kind, where, count = sys.argv[1:6]
    asyncio.run(main(base, key, kind, where, int(count)))
