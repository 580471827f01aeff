"""Listing speed and memory: prefetch and concurrent walks against sequential fetching.

Run: ``.venv/bin/python -m benchmarks.bench_listing [--repeats 5]``

A sandbox in its own process answers every request after 20 ms. Measured in one run,
alternating so that noise hits all variants alike (medians over the repeats):
- a 50-page listing whose consumer awaits 20 ms per page (standing for a database
  write), fetched strictly sequentially (``prefetch=0``) and with ``prefetch=1``;
- the same listing with no consumer work, sequential and with ``concurrency=8``;
- peak RSS growth of this process while iterating 100,000 records (page size 100).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from cloudonex_async import Client, LocalLimiter

from ._common import API_KEY, median, sandbox_process

PAGES = 50
PAGE_SIZE = 100
WORK_SECONDS = 0.02


def rss_bytes() -> int:
    """Resident set size of this process."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096


async def walk(client: Client, *, work: float, prefetch: int, concurrency: int = 1) -> float:
    """Seconds to walk 50 pages with the given list() options."""
    start = time.perf_counter()
    count = 0
    listing = client.customers.list(page_size=PAGE_SIZE, prefetch=prefetch, concurrency=concurrency)
    async for page in listing.pages():
        count += len(page.items)
        if work:
            await asyncio.sleep(work)
    assert count == PAGES * PAGE_SIZE, count
    return time.perf_counter() - start


async def speed(base_url: str, repeats: int) -> dict[str, float]:
    """Median times and ratios for the three walks."""
    limiter = LocalLimiter(rate_limit=1_000_000)
    async with Client(base_url=base_url, api_key=API_KEY, limiter=limiter) as client:
        await walk(client, work=0, prefetch=0)  # warm-up
        times: dict[str, list[float]] = {}
        for _ in range(repeats):
            for name, work, prefetch, concurrency in (
                ("sequential+work", WORK_SECONDS, 0, 1),
                ("prefetch+work", WORK_SECONDS, 1, 1),
                ("sequential", 0.0, 0, 1),
                ("concurrent8", 0.0, 0, 8),
            ):
                elapsed = await walk(client, work=work, prefetch=prefetch, concurrency=concurrency)
                times.setdefault(name, []).append(elapsed)
    result = {name: median(values) for name, values in times.items()}
    result["prefetch_speedup"] = median(
        [s / p for s, p in zip(times["sequential+work"], times["prefetch+work"], strict=True)]
    )
    result["concurrent_speedup"] = median(
        [s / c for s, c in zip(times["sequential"], times["concurrent8"], strict=True)]
    )
    return result


async def memory(base_url: str) -> tuple[int, int]:
    """Peak RSS growth (bytes) while iterating 100,000 records, and the count."""
    limiter = LocalLimiter(rate_limit=1_000_000)
    async with Client(base_url=base_url, api_key=API_KEY, limiter=limiter) as client:
        await client.customers.list(page_size=PAGE_SIZE, limit=PAGE_SIZE).collect()  # warm-up
        baseline = peak = rss_bytes()
        count = 0
        async for _customer in client.customers.list(page_size=PAGE_SIZE, prefetch=1):
            count += 1
            if count % PAGE_SIZE == 0:
                peak = max(peak, rss_bytes())
    return peak - baseline, count


def main() -> None:
    """Run both parts and print the results."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    seed = str(PAGES * PAGE_SIZE)
    unlimited = ("--rate-limit", "100000000")
    with sandbox_process("--latency", "0.02", "--seed-customers", seed, *unlimited) as base_url:
        result = asyncio.run(speed(base_url, args.repeats))
    with sandbox_process("--seed-customers", "100000", *unlimited) as base_url:
        growth, count = asyncio.run(memory(base_url))
    for name in ("sequential+work", "prefetch+work", "sequential", "concurrent8"):
        print(f"{name:>16}: {result[name]:.3f} s (median of {args.repeats})")
    print(f"prefetch speed-up with 20 ms of work per page: {result['prefetch_speedup']:.2f}x")
    print(f"concurrency=8 speed-up, no work: {result['concurrent_speedup']:.2f}x")
    print(f"peak RSS growth over {count} records: {growth / 2**20:.2f} MiB")


if __name__ == "__main__":
    main()
