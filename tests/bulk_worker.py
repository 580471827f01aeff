"""A bulk job in its own process, for the crash test.

Usage: python -m tests.bulk_worker BASE_URL API_KEY JOURNAL COUNT
Creates COUNT customers (one request each, 4 at a time) with a journal and a
reconcile hook that looks a customer up by email; prints the summary when done.
"""

from __future__ import annotations

import asyncio
import sys

from cloudonex_async import Client, Customer, LocalLimiter


async def main(base_url: str, api_key: str, journal: str, count: int) -> None:
    async with Client(base_url=base_url, api_key=api_key, limiter=LocalLimiter()) as client:

        async def reconcile(record: dict[str, str]) -> Customer | None:
            found = await client.customers.list(search=record["email"]).collect()
            return next((c for c in found if c.email == record["email"]), None)

        records = (
            {"account": f"Person {n}", "email": f"person{n}@example.com"} for n in range(count)
        )
        result = await client.customers.bulk_create(
            records,
            key=lambda r: r["email"],
            batch_size=None,
            concurrency=4,
            journal=journal,
            reconcile=reconcile,
        )
    print(result.summary(), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
