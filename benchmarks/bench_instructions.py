"""Instructions per request, client against raw aiohttp: the throughput ratio without noise.

Run: ``.venv/bin/python -m benchmarks.bench_instructions`` (needs valgrind; about two
minutes). On a shared machine wall-clock ratios wander; ``valgrind --tool=callgrind``
counts the instructions the client process executes, which do not depend on what
else the machine is doing (they still move by about 2% between runs, with how answers
bunch up per event-loop wake-up). Each side of ``bench_throughput`` (concurrency 64,
the sandbox in its own process, not under valgrind) runs twice, with a small and a
large number of requests; the difference divided by the difference in requests is the
cost of one request, start-up excluded. The ratio is raw aiohttp's instructions per
request over the client's (user-space instructions only: system calls, about the same
on both sides, are not counted).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from ._common import sandbox_process

_COLLECTED = re.compile(r"Collected : (\d+)")


def instructions(base_url: str, side: str, requests: int) -> int:
    """Return the instructions callgrind counts for one run of ``side``."""
    completed = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-m",
            "benchmarks.bench_throughput",
            "--side",
            side,
            "--base-url",
            base_url,
            "--requests",
            str(requests),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    found = _COLLECTED.search(completed.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{completed.stderr}")
    return int(found.group(1))


def main() -> None:
    """Count both sides and print the per-request figures and their ratio."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--large", type=int, default=2500)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")
    runs = [(side, n) for side in ("raw", "client") for n in (args.small, args.large)]
    with sandbox_process("--rate-limit", "100000000") as base_url, ThreadPoolExecutor(1) as pool:
        found = pool.map(lambda run: instructions(base_url, *run), runs)
        counts = dict(zip(runs, found, strict=True))
    per_request = {
        side: (counts[side, args.large] - counts[side, args.small]) / (args.large - args.small)
        for side in ("raw", "client")
    }
    print("side   | instructions per request (concurrency 64)")
    for side, value in per_request.items():
        print(f"{side:<6} | {value:>10,.0f}")
    print(f"ratio (raw / client): {per_request['raw'] / per_request['client']:.3f}")


if __name__ == "__main__":
    main()
