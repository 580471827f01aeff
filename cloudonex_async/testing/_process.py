"""A server in a child process on a free loopback port (the benchmarks' sandbox, Redis)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def listening_process(
    command: Callable[[int], Sequence[str]], *, name: str, timeout: float = 15.0
) -> Iterator[int]:
    """Start ``command(port)`` on a free port, wait until it accepts connections, yield the port.

    The process is terminated on exit. Raises RuntimeError if it does not listen
    within ``timeout`` seconds.
    """
    port = free_port()
    process = subprocess.Popen(command(port), stdout=subprocess.DEVNULL)  # stderr: shown
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start on port {port}") from None
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)
