"""Helpers for the benchmarks: a sandbox in its own process, and timing."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from cloudonex_async.testing._process import listening_process

API_KEY = "bench-key"


@contextlib.contextmanager
def sandbox_process(*args: str) -> Iterator[str]:
    """Run ``python -m cloudonex_async.testing`` in a child process; yield its base URL.

    The sandbox gets a core of its own, so the client's cost is not hidden by the server's.
    """

    def command(port: int) -> list[str]:
        return [
            sys.executable,
            *("-m", "cloudonex_async.testing", "--port", str(port), "--api-key", API_KEY),
            *args,
        ]

    with listening_process(command, name="the sandbox") as port:
        yield f"http://127.0.0.1:{port}"


def median(values: list[float]) -> float:
    """Return the median."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
