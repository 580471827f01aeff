"""How much of a binding budget the client spends, and whether it ever trips a 429.

Run: ``.venv/bin/python -m benchmarks.bench_budget [--limit 50] [--period 2] [--windows 5]``

A sandbox in its own process allows ``limit`` requests per ``period`` seconds (windows
aligned to the clock). The client starts on a window boundary and keeps 32 requests
in flight for ``windows`` whole windows. Utilisation is requests completed divided by
the budget of those windows; the sandbox must never have answered 429.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time

from cloudonex_async import Client, LocalLimiter, RateLimitError

from ._common import API_KEY, sandbox_process


async def run(base_url: str, limit: int, period: float, windows: int) -> dict[str, float]:
    """Spend the budget for ``windows`` windows; return what happened."""
    limiter = LocalLimiter(rate_limit=limit, rate_period=period, bulk_reserve=0.0)
    start = (math.floor(time.time() / period) + 1) * period
    await asyncio.sleep(start - time.time())
    deadline = start + windows * period
    done = 0
    async with Client(base_url=base_url, api_key=API_KEY, limiter=limiter) as client:

        async def worker() -> None:
            nonlocal done
            while True:
                remaining = deadline - time.time()
                if remaining <= 0:
                    return
                try:
                    await client.request("GET", "customers", max_wait=remaining)
                except RateLimitError:  # the next window starts after the run
                    return
                if time.time() <= deadline:
                    done += 1

        await asyncio.gather(*(worker() for _ in range(32)))
        stats = client.rate_limit
    return {
        "completed": done,
        "budget": limit * windows,
        "utilisation": done / (limit * windows),
        "rate_limited": stats.rate_limited,
    }


def main() -> None:
    """Run the benchmark and print the result."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--period", type=float, default=2.0)
    parser.add_argument("--windows", type=int, default=5)
    args = parser.parse_args()
    with sandbox_process(
        "--rate-limit", str(args.limit), "--rate-period", str(args.period)
    ) as base_url:
        result = asyncio.run(run(base_url, args.limit, args.period, args.windows))
    print(
        f"budget {args.limit}/{args.period:g}s x {args.windows} windows: "
        f"{result['completed']:.0f} of {result['budget']:.0f} requests completed "
        f"(utilisation {result['utilisation']:.3f}), 429s: {result['rate_limited']:.0f}"
    )


if __name__ == "__main__":
    main()
