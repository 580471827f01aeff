"""The demo behind ``make demo``: a short job against the embedded sandbox.

It starts a sandbox on loopback, creates customers, invoices one of them, lists
everything back page by page, syncs a changed customer list (one new, one changed)
and prints a summary with the budget left.
Run it with ``python -m cloudonex_async.demo``.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from . import Client, SyncPlan
from .testing import SandboxServer

PEOPLE = [
    ("Jane Doe", "jane@example.com", "1234567890"),
    ("John Doe", "john@example.com", "5550100"),
    ("Ada Lovelace", "ada@example.com", "5550101"),
    ("Grace Hopper", "grace@example.com", "5550102"),
    ("Alan Turing", "alan@example.com", "5550103"),
]


async def run() -> None:
    """Run the demo job and print what happened."""
    async with SandboxServer(latency=0.005) as sandbox:
        print(f"sandbox: {sandbox.base_url}/api/v2/")
        async with Client(base_url=sandbox.base_url, api_key=sandbox.api_key) as client:
            customers = await asyncio.gather(
                *(
                    client.customers.create({"account": name, "email": email, "phone": phone})
                    for name, email, phone in PEOPLE
                )
            )
            jane = customers[0]
            invoice = await client.invoices.create(
                {
                    "customer_id": jane.id,
                    "items": [
                        {"description": "Product A", "amount": "100.00", "qty": 1},
                        {"description": "Support hours", "amount": "0.10", "qty": 3},
                    ],
                }
            )
            listed = [c async for c in client.customers.list(page_size=2)]
            invoices = await client.invoices.list(customer_id=jane.id).collect()
            tonight = [{"account": n, "email": e, "phone": p} for n, e, p in PEOPLE]
            tonight[2]["phone"] = "5550199"  # Ada has a new number
            tonight.append({"account": "Edsger Dijkstra", "email": "edsger@example.com"})
            plans: list[SyncPlan] = []  # shown before the first write, read once
            synced = await client.customers.sync(tonight, key="email", on_plan=plans.append)
            status = client.rate_limit

        print(f"\ncreated {len(customers)} customers; listed back {len(listed)} (2 per page):")
        for customer in listed:
            print(
                f"  #{customer.id:<3} {customer.account:<14} {customer.email:<20} {customer.phone}"
            )
        total = sum((i.amount or Decimal(0) for i in invoices), Decimal(0))
        print(f"\ninvoice {invoice.invoice_number} for {jane.account}: ", end="")
        print(f"{invoice.status}, {invoice.amount}")
        for item in invoice.items or []:
            print(f"  {item.description:<14} {item.qty} x {item.amount}")
        print(f"invoices of {jane.account}: {len(invoices)}, total {total}")
        print(f"\nsync plan: {plans[0].summary()}")
        print(f"sync: {synced.summary()}")
        for outcome in synced.outcomes:
            if outcome.status != "unchanged":
                print(f"  {outcome.status:<8} {outcome.key}: {dict(outcome.changes)}")
        print(
            f"\nbudget: {status.remaining} of {status.limit} requests left this hour; "
            f"{status.requests_sent} sent, {status.retries} retried, "
            f"{status.rate_limited} rate-limited"
        )


if __name__ == "__main__":
    asyncio.run(run())
