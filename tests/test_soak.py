"""The soak: three processes share one RedisLimiter and run mixed traffic against a faulty
sandbox for a fixed time; nothing is lost, duplicated or leaked, and memory stays flat.

The short run (8 s) is part of ``make test``; ``make soak`` runs it for longer
(``CLOUDONEX_SOAK_SECONDS``, 120 by default there) and prints the figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from pathlib import Path

import pytest

from cloudonex_async.testing import Faults

from .conftest import SandboxFactory

ROOT = Path(__file__).resolve().parent.parent
SECONDS = float(os.environ.get("CLOUDONEX_SOAK_SECONDS", "8"))
WORKERS = 3


@pytest.mark.slow
async def test_three_processes_soak_a_faulty_server_and_lose_nothing(
    redis_url: str, make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    faults = Faults(error_rate=0.05, drop_rate=0.03, after_processing=0.5, seed=5)
    sandbox = await make_sandbox(rate_limit=60, rate_period=1, latency=0.005, faults=faults)
    sandbox.seed("customers", [{"account": f"Seed {n}"} for n in range(20)])
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.soak_worker",
            sandbox.base_url,
            sandbox.api_key,
            redis_url,
            str(worker),
            str(SECONDS),
            str(tmp_path),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for worker in range(WORKERS)
    ]
    outputs = await asyncio.wait_for(
        asyncio.gather(*(p.communicate() for p in procs)), SECONDS * 3 + 60
    )
    for (_, err), proc in zip(outputs, procs, strict=True):
        assert proc.returncode == 0, err.decode()
    reports = [json.loads(out) for out, _ in outputs]

    statuses = Counter(r.status for r in sandbox.requests)
    emails = Counter(str(r.get("email")) for r in sandbox.records("customers") if r.get("email"))
    # The budget: zero 429s, from the server's log and from every worker's counters.
    assert statuses[429] == 0, statuses
    assert sum(int(r["rate_limited"]) for r in reports) == 0
    # No record twice, whatever the faults did to the answers.
    assert all(n == 1 for n in emails.values()), [e for e, n in emails.items() if n > 1]
    for report in reports:
        bulk, single = report["bulk"], report["single"]
        # Every bulk record has exactly one outcome, and each one reported created exists.
        assert bulk["outcomes"] == bulk["submitted"]
        assert all(emails[key] == 1 for key in bulk["created"])
        assert all(emails[email] == 1 for email in single["created"])
        assert report["counts"]["bulk"] > 0
        # Nothing left behind once the client closed.
        assert report["tasks_left"] == 0
        assert report["fds_after"] <= report["fds_before"]
        # Memory flat: the end within 10% of the level after the warm-up.
        warm, end = report["rss"]
        assert end <= warm * 1.10, (warm, end)
    if os.environ.get("CLOUDONEX_SOAK_REPORT"):
        summary = {
            "seconds": SECONDS,
            "server_requests": sum(statuses.values()),
            "statuses": dict(statuses),
            "faults": Counter(r.fault for r in sandbox.requests if r.fault),
            "records_stored": len(emails),
            "workers": [
                {
                    "sent": r["sent"],
                    "counts": r["counts"],
                    "bulk_submitted": r["bulk"]["submitted"],
                    "bulk_created": len(r["bulk"]["created"]),
                    "bulk_unknown": r["bulk"]["unknown"],
                    "bulk_failed": r["bulk"]["failed"],
                    "single_created": len(r["single"]["created"]),
                    "single_unknown": len(r["single"]["unknown"]),
                    "rss_mib": [round(x / 2**20, 1) for x in r["rss"]],
                    "fds": [r["fds_before"], r["fds_after"]],
                }
                for r in reports
            ],
        }
        print(json.dumps(summary, indent=1))
