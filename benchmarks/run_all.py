"""Run every benchmark in turn (``make bench``); each prints its own results."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = (
    "bench_throughput",
    "bench_instructions",
    "bench_budget",
    "bench_listing",
    "bench_bulk",
    "bench_sync",
)


def main() -> None:
    """Run each benchmark module in a fresh interpreter."""
    for name in BENCHMARKS:
        print(f"== {name}", flush=True)
        subprocess.run([sys.executable, "-m", f"benchmarks.{name}"], check=True)


if __name__ == "__main__":
    main()
