"""Bulk job speed and budget use against the embedded sandbox.

Run: ``.venv/bin/python -m benchmarks.bench_bulk``

1. N records at concurrency C, 50 ms sandbox latency (the sandbox in its own process),
   a budget that never binds, one request per record: at most 1.2 x N x 50 ms / C.
   Bare aiohttp POSTing the same records is measured alongside, as the floor.
2. A binding budget (100 requests per 5 s), 450 records, one request each, no
   reserve: the job should use the minimum number of windows (5) and see no 429.
3. 10,000 customers with the batch endpoint under the default budget (1000/hour):
   at most 100 requests, as counted by the sandbox.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter

import aiohttp

from cloudonex_async import Client, LocalLimiter
from cloudonex_async.testing import SandboxServer

from ._common import API_KEY, median, sandbox_process


def records(count: int) -> list[dict[str, str]]:
    """Distinct customers."""
    return [{"account": f"Bulk {n}", "email": f"bulk{n}@example.com"} for n in range(count)]


async def fan_out(base_url: str, count: int, concurrency: int) -> float:
    """Seconds the job took."""
    limiter = LocalLimiter(rate_limit=10**9)
    async with Client(base_url=base_url, api_key=API_KEY, limiter=limiter) as client:
        await client.customers.list(limit=1).collect()  # open a connection first
        start = time.perf_counter()
        result = await client.customers.bulk_create(
            records(count), batch_size=None, concurrency=concurrency
        )
        elapsed = time.perf_counter() - start
    assert len(result.succeeded) == count, result.summary()
    return elapsed


async def raw_fan_out(base_url: str, count: int, concurrency: int) -> float:
    """Seconds bare aiohttp takes to POST the same records, as the floor."""
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    url = f"{base_url}/api/v2/customers"
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(url, headers=headers) as response:
            await response.read()
        semaphore = asyncio.Semaphore(concurrency)

        async def one(record: dict[str, str]) -> None:
            async with semaphore, session.post(url, data=json.dumps(record), headers=headers) as r:
                json.loads(await r.read())

        start = time.perf_counter()
        await asyncio.gather(*(one(record) for record in records(count)))
        return time.perf_counter() - start


async def binding_budget(count: int, limit: int, period: float) -> dict[str, int]:
    """Windows used by a job that needs more than one window, and 429s seen."""
    async with SandboxServer(rate_limit=limit, rate_period=period) as sandbox:
        limiter = LocalLimiter(rate_limit=limit, rate_period=period, bulk_reserve=0.0)
        async with Client(base_url=sandbox.base_url, api_key=sandbox.api_key, limiter=limiter) as c:
            await asyncio.sleep((math.floor(time.time() / period) + 1) * period - time.time())
            result = await c.customers.bulk_create(records(count), batch_size=None, concurrency=16)
        windows = Counter(math.floor(r.at / period) for r in sandbox.requests)
    assert len(result.succeeded) == count, result.summary()
    return {
        "windows": len(windows),
        "minimum": math.ceil(count / limit),
        "rate_limited": sum(1 for r in sandbox.requests if r.status == 429),
    }


async def batched(count: int) -> dict[str, int]:
    """Requests the sandbox counted for ``count`` creates through the batch endpoint."""
    async with SandboxServer() as sandbox:
        async with Client(
            base_url=sandbox.base_url, api_key=sandbox.api_key, limiter=LocalLimiter()
        ) as c:
            result = await c.customers.bulk_create(records(count), batch_size=100)
        stored = len(sandbox.records("customers"))
    assert len(result.succeeded) == count, result.summary()
    return {"requests": len(sandbox.requests), "stored": stored}


def main() -> None:
    """Run the three parts and print the results."""
    count, concurrency, latency = 400, 16, 0.05
    ours, raw = [], []
    with sandbox_process("--latency", str(latency), "--rate-limit", "1000000000") as url:
        for _ in range(5):
            raw.append(asyncio.run(raw_fan_out(url, count, concurrency)))
            ours.append(asyncio.run(fan_out(url, count, concurrency)))
    bound = 1.2 * count * latency / concurrency
    print(
        f"1. {count} records, concurrency {concurrency}, 50 ms latency: bulk_create "
        f"{median(ours):.2f} s (runs {min(ours):.2f}-{max(ours):.2f}), bare aiohttp "
        f"{median(raw):.2f} s (runs {min(raw):.2f}-{max(raw):.2f}); bound {bound:.2f} s, "
        f"ideal {count * latency / concurrency:.2f} s"
    )
    budget = asyncio.run(binding_budget(450, 100, 5.0))
    print(
        f"2. 450 records at 100 per 5 s: {budget['windows']} windows "
        f"(minimum {budget['minimum']}), 429s: {budget['rate_limited']}"
    )
    batch = asyncio.run(batched(10_000))
    print(
        f"3. 10,000 customers with batching: {batch['requests']} requests, {batch['stored']} stored"
    )


if __name__ == "__main__":
    main()
