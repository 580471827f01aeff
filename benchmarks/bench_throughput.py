"""Client throughput against raw aiohttp, side by side, with a budget that never binds.

Run: ``.venv/bin/python -m benchmarks.bench_throughput [--requests N] [--repeats R]``

Both send ``GET /api/v2/customers`` to a sandbox in its own process and decode the
JSON, driven alike: N calls, C at a time (as C request handlers would). The client
adds request building, the limiter, the concurrency cap, the envelope parser and
budget-header bookkeeping. Runs alternate raw/client so machine noise hits both
alike; the ratio is the median of the per-repeat ratios. The CPU-time ratio (bare
aiohttp's CPU per request over the client's) is printed too: it moves less with the
machine's other load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import aiohttp

from cloudonex_async import Client, LocalLimiter

from ._common import API_KEY, median, sandbox_process


async def drive(
    call: Callable[[], Awaitable[object]], requests: int, concurrency: int
) -> tuple[float, float]:
    """Run ``requests`` calls, ``concurrency`` at a time.

    Returns calls per second, and this process's CPU microseconds per call (steadier
    than wall time on a shared machine).
    """
    semaphore = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with semaphore:
            await call()

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one() for _ in range(requests)))
    cpu_us = (time.process_time() - cpu) / requests * 1e6
    return requests / (time.perf_counter() - start), cpu_us


async def measure(base_url: str, requests: int, repeats: int) -> dict[int, dict[str, float]]:
    """Return, per concurrency, the median rates and the median ratio.

    Each side keeps one pooled session for the whole run (as a service does), is
    warmed up first, and the two alternate so that noise hits both alike.
    """
    headers = {"Authorization": f"Bearer {API_KEY}", "Accept": "application/json"}
    url = f"{base_url}/api/v2/customers"
    results: dict[int, dict[str, float]] = {}
    for concurrency in (1, 64):
        n = requests if concurrency > 1 else requests // 4
        connector = aiohttp.TCPConnector(limit=concurrency)
        limiter = LocalLimiter(rate_limit=10_000_000, rate_period=3600)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            Client(
                base_url=base_url, api_key=API_KEY, limiter=limiter, max_concurrency=concurrency
            ) as client,
        ):

            async def raw() -> None:
                async with session.get(url, headers=headers) as response:
                    json.loads(await response.read())

            async def ours() -> None:
                await client.request("GET", "customers")

            await drive(raw, n // 4, concurrency)  # warm-up
            await drive(ours, n // 4, concurrency)
            raws, clients, ratios, cpu_ratios = [], [], [], []
            for _ in range(repeats):
                raw_rate, raw_cpu = await drive(raw, n, concurrency)
                client_rate, client_cpu = await drive(ours, n, concurrency)
                raws.append(raw_rate)
                clients.append(client_rate)
                ratios.append(client_rate / raw_rate)
                cpu_ratios.append(raw_cpu / client_cpu)
        results[concurrency] = {
            "raw_rps": median(raws),
            "client_rps": median(clients),
            "ratio": median(ratios),
            "ratio_min": min(ratios),
            "cpu_ratio": median(cpu_ratios),
        }
    return results


def main() -> None:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    with sandbox_process("--rate-limit", "100000000") as base_url:
        results = asyncio.run(measure(base_url, args.requests, args.repeats))
    print(
        "concurrency | raw aiohttp req/s | client req/s | ratio (median) | ratio (min) "
        "| CPU-time ratio (median)"
    )
    for concurrency, r in results.items():
        print(
            f"{concurrency:>11} | {r['raw_rps']:>17.0f} | {r['client_rps']:>12.0f} | "
            f"{r['ratio']:>14.2f} | {r['ratio_min']:>11.2f} | {r['cpu_ratio']:>23.2f}"
        )


if __name__ == "__main__":
    main()
