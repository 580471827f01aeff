"""Client throughput against raw aiohttp, side by side, with a budget that never binds.

Run: ``.venv/bin/python -m benchmarks.bench_throughput [--requests N] [--rounds R]``

Both send ``GET /api/v2/customers`` to a sandbox in its own process and decode the
JSON, driven alike: N calls, C at a time (as C request handlers would). The client
adds request building, the limiter, the concurrency cap, the envelope parser and
budget-header bookkeeping. Each round runs the two back to back (raw first in even
rounds, client first in odd ones, garbage collected before each half), so the two
halves of a round share the machine's load of the moment; the ratio is the median of
the per-round ratios. The CPU-time ratio (raw aiohttp's CPU per request over the
client's, in this process) is printed too.

``--side raw|client --base-url URL`` runs one side once and exits: that is what
``bench_instructions`` counts under callgrind.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aiohttp

from cloudonex_async import Client, LocalLimiter

from ._common import API_KEY, median, sandbox_process

Call = Callable[[], Awaitable[object]]


@asynccontextmanager
async def sides(base_url: str, concurrency: int) -> AsyncIterator[dict[str, Call]]:
    """Yield the two ways of making the same call, each on its own pooled session."""
    headers = {"Authorization": f"Bearer {API_KEY}", "Accept": "application/json"}
    url = f"{base_url}/api/v2/customers"
    limiter = LocalLimiter(rate_limit=10_000_000, rate_period=3600)
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session,
        Client(
            base_url=base_url, api_key=API_KEY, limiter=limiter, max_concurrency=concurrency
        ) as client,
    ):

        async def raw() -> None:
            async with session.get(url, headers=headers) as response:
                json.loads(await response.read())

        async def ours() -> None:
            await client.request("GET", "customers")

        yield {"raw": raw, "client": ours}


async def drive(call: Call, requests: int, concurrency: int) -> tuple[float, float]:
    """Run ``requests`` calls, ``concurrency`` at a time.

    Returns calls per second, and this process's CPU microseconds per call.
    """
    semaphore = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with semaphore:
            await call()

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one() for _ in range(requests)))
    cpu_us = (time.process_time() - cpu) / requests * 1e6
    return requests / (time.perf_counter() - start), cpu_us


async def measure(base_url: str, requests: int, rounds: int) -> dict[int, dict[str, float]]:
    """Return, per concurrency, the median rates and ratios over paired rounds."""
    results: dict[int, dict[str, float]] = {}
    for concurrency in (1, 64):
        n = requests if concurrency > 1 else requests // 4
        async with sides(base_url, concurrency) as calls:
            for call in calls.values():  # warm up both pools
                await drive(call, n // 2, concurrency)
            raws, clients, ratios, cpu_ratios = [], [], [], []
            for round_ in range(rounds):
                order = ("raw", "client") if round_ % 2 == 0 else ("client", "raw")
                halves = {}
                for side in order:
                    gc.collect()  # neither half pays for the other's garbage
                    halves[side] = await drive(calls[side], n, concurrency)
                (raw_rate, raw_cpu), (client_rate, client_cpu) = halves["raw"], halves["client"]
                raws.append(raw_rate)
                clients.append(client_rate)
                ratios.append(client_rate / raw_rate)
                cpu_ratios.append(raw_cpu / client_cpu)
        ordered = sorted(ratios)
        results[concurrency] = {
            "raw_rps": median(raws),
            "client_rps": median(clients),
            "ratio": median(ratios),
            "ratio_q1": ordered[len(ordered) // 4],
            "ratio_q3": ordered[(3 * len(ordered)) // 4],
            "cpu_ratio": median(cpu_ratios),
        }
    return results


async def run_side(base_url: str, side: str, requests: int, concurrency: int) -> None:
    """Make ``requests`` calls on one side (for instruction counting)."""
    async with sides(base_url, concurrency) as calls:
        await drive(calls[side], requests, concurrency)


def main() -> None:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000, help="calls per side per round")
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--side", choices=("raw", "client"))
    parser.add_argument("--base-url")
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    if args.side:
        asyncio.run(run_side(args.base_url, args.side, args.requests, args.concurrency))
        return
    with sandbox_process("--rate-limit", "100000000") as base_url:
        results = asyncio.run(measure(base_url, args.requests, args.rounds))
    print(
        "concurrency | raw aiohttp req/s | client req/s | ratio (median) | ratio (quartiles) "
        "| CPU-time ratio (median)"
    )
    for concurrency, r in results.items():
        quartiles = f"{r['ratio_q1']:.2f}-{r['ratio_q3']:.2f}"
        print(
            f"{concurrency:>11} | {r['raw_rps']:>17.0f} | {r['client_rps']:>12.0f} | "
            f"{r['ratio']:>14.2f} | {quartiles:>17} | {r['cpu_ratio']:>23.2f}"
        )


if __name__ == "__main__":
    main()
