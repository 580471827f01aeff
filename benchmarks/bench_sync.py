"""The nightly sync: ``Resource.sync`` against the hand-written one-lookup-per-record job.

Run: ``.venv/bin/python -m benchmarks.bench_sync``

The sandbox holds 2,000 customers (at most 100 per page, 20 ms per answer). The input
is the same 2,000 with 100 changed and 50 new. Both versions run in the same process
against fresh copies of the same sandbox, at the same concurrency (8), under the default
budget lifted (the hand-written job needs more than one hour's 1000 requests, and
would wait for the next window); each ends with the sandbox matching the input, which
is checked. Reported: requests (counted by the sandbox), wall time, and what the
requests are in hours of a 1000-per-hour budget. Target: the sync at most 130
requests.
"""

from __future__ import annotations

import asyncio
import time

from cloudonex_async import Client, Customer, LocalLimiter
from cloudonex_async.testing import SandboxServer

SEEDED, CHANGED, NEW, CONCURRENCY, LATENCY = 2000, 100, 50, 8, 0.02


def remote() -> list[dict[str, object]]:
    """What the server holds before the run."""
    return [
        {"account": f"Person {n}", "email": f"person{n}@example.com", "phone": "v1"}
        for n in range(SEEDED)
    ]


def wanted() -> list[dict[str, str]]:
    """The night's input: the same customers, some changed, some new."""
    rows = [
        {"account": f"Person {n}", "email": f"person{n}@example.com", "phone": "v1"}
        for n in range(SEEDED + NEW)
    ]
    for row in rows[:CHANGED]:
        row["phone"] = "v2"
    return rows


async def by_sync(client: Client) -> None:
    """The library's sync."""
    result = await client.customers.sync(wanted(), key="email", concurrency=CONCURRENCY)
    assert not result.failed, result.summary()
    assert not result.unknown, result.summary()


async def by_hand(client: Client) -> None:
    """What a user writes without sync: look each record up by email, then act."""
    lanes = asyncio.Semaphore(CONCURRENCY)

    async def one(row: dict[str, str]) -> None:
        async with lanes:
            found: list[Customer] = await client.customers.list(email=row["email"]).collect()
            if not found:
                await client.customers.create(row)
            elif found[0].phone != row["phone"] or found[0].account != row["account"]:
                await client.customers.update(found[0].id or 0, {"phone": row["phone"]})

    await asyncio.gather(*(one(row) for row in wanted()))


async def measure(job: str) -> tuple[int, float]:
    """Requests and seconds of one version, against a fresh sandbox."""
    lifted = 10**9
    async with SandboxServer(max_page_size=100, latency=LATENCY, rate_limit=lifted) as sandbox:
        sandbox.seed("customers", remote())
        async with Client(
            base_url=sandbox.base_url,
            api_key=sandbox.api_key,
            limiter=LocalLimiter(rate_limit=lifted),
        ) as client:
            start = time.perf_counter()
            await (by_sync(client) if job == "sync" else by_hand(client))
            elapsed = time.perf_counter() - start
        held = {str(r["email"]): r for r in sandbox.records("customers")}
        assert len(held) == SEEDED + NEW == len(sandbox.records("customers"))
        assert all(held[r["email"]]["phone"] == r["phone"] for r in wanted())
        return len(sandbox.requests), elapsed


def main() -> None:
    """Measure both versions, alternating, three times each, and print the figures."""
    runs: dict[str, list[tuple[int, float]]] = {"sync": [], "by hand": []}
    for _ in range(3):
        for job in runs:
            runs[job].append(asyncio.run(measure(job)))
    print(f"{SEEDED} customers held, {CHANGED} changed and {NEW} new, {LATENCY * 1000:.0f} ms:")
    for job, figures in runs.items():
        requests = figures[0][0]
        times = sorted(t for _, t in figures)
        print(
            f"  {job:8} {requests:5} requests ({requests / 1000:.2f} h of a 1000/h budget), "
            f"{times[1]:.2f} s (runs {times[0]:.2f}-{times[-1]:.2f})"
        )
    (sync_requests, _), (hand_requests, _) = runs["sync"][0], runs["by hand"][0]
    sync_time = sorted(t for _, t in runs["sync"])[1]
    hand_time = sorted(t for _, t in runs["by hand"])[1]
    print(
        f"  ratio    {hand_requests / sync_requests:.1f}x fewer requests, "
        f"{hand_time / sync_time:.1f}x less time"
    )


if __name__ == "__main__":
    main()
