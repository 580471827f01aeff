"""One worker process of the soak test: mixed traffic through a shared RedisLimiter.

Usage: python -m tests.soak_worker BASE_URL API_KEY REDIS_URL WORKER SECONDS JOURNAL_DIR

For SECONDS it keeps four tasks busy with a random mix of gets, listings, single
creates and journaled bulk creates (each record with an email unique to this worker),
then prints one JSON line: what it sent and how each record ended, the 429s it met,
the tasks and file descriptors left once the client closed, and its memory (RSS) after
a warm-up and at the end.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import sys
import time
from pathlib import Path

from redis.asyncio import Redis

from cloudonex_async import Client, CloudOnexError, Customer, OutcomeUnknownError, RedisLimiter


def rss_bytes() -> int:
    """This process's resident memory, from /proc."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def main(argv: list[str]) -> None:
    base_url, api_key, redis_url, worker, seconds, journals = argv
    duration = float(seconds)
    rng = random.Random(int(worker))
    fds_before = open_fds()
    redis = Redis.from_url(redis_url)
    limiter = RedisLimiter(redis, base_url=base_url, api_key=api_key)
    report: dict[str, object] = {"worker": worker}
    counts = {"get": 0, "list": 0, "create": 0, "bulk": 0, "errors": 0}
    single = {"created": [], "unknown": [], "failed": 0}
    bulk = {"submitted": 0, "outcomes": 0, "created": [], "unknown": 0, "failed": 0}
    serial = iter(range(10**9))
    rss: list[int] = []

    async with Client(
        base_url=base_url,
        api_key=api_key,
        limiter=limiter,
        timeout=2.0,
        max_concurrency=8,
    ) as client:

        async def by_email(record: dict[str, str]) -> Customer | None:
            found = await client.customers.list(search=record["email"]).collect()
            return next((c for c in found if c.email == record["email"]), None)

        def record() -> dict[str, str]:
            n = next(serial)
            return {"account": f"W{worker} #{n}", "email": f"w{worker}-{n}@soak.example"}

        async def one_step() -> None:
            kind = rng.choices(["get", "list", "create", "bulk"], [4, 3, 3, 1])[0]
            counts[kind] += 1
            try:
                if kind == "get":
                    await client.customers.get(rng.randint(1, 20))
                elif kind == "list":
                    await client.customers.list(page_size=10, limit=10).collect()
                elif kind == "create":
                    data = record()
                    try:
                        await client.customers.create(data)
                        single["created"].append(data["email"])  # type: ignore[attr-defined]
                    except OutcomeUnknownError:
                        single["unknown"].append(data["email"])  # type: ignore[attr-defined]
                else:
                    records = [record() for _ in range(rng.randint(5, 20))]
                    bulk["submitted"] += len(records)  # type: ignore[operator]
                    journal = Path(journals) / f"w{worker}-{next(serial)}.journal"
                    result = await client.customers.bulk_create(
                        records,
                        key=lambda r: r["email"],
                        batch_size=rng.choice([None, 5]),
                        journal=str(journal),
                        reconcile=by_email,
                    )
                    bulk["outcomes"] += len(result.outcomes)  # type: ignore[operator]
                    for outcome in result.outcomes:
                        if outcome.status == "created":
                            bulk["created"].append(outcome.key)  # type: ignore[attr-defined]
                        else:
                            bulk[outcome.status] += 1  # type: ignore[operator]
            except CloudOnexError:
                counts["errors"] += 1

        async def lane(deadline: float) -> None:
            while time.monotonic() < deadline:
                await one_step()

        start = time.monotonic()
        await asyncio.gather(*(lane(start + duration * 0.3) for _ in range(4)))
        gc.collect()
        rss.append(rss_bytes())  # after the warm-up: pools, caches and scripts are in place
        await asyncio.gather(*(lane(start + duration) for _ in range(4)))
        stats = client.rate_limit
    await redis.aclose()
    gc.collect()
    rss.append(rss_bytes())
    await asyncio.sleep(0)  # let closed transports finish their callbacks
    report.update(
        counts=counts,
        single=single,
        bulk=bulk,
        rate_limited=stats.rate_limited,
        sent=stats.requests_sent,
        tasks_left=len(asyncio.all_tasks()) - 1,
        fds_before=fds_before,
        fds_after=open_fds(),
        rss=rss,
    )
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
