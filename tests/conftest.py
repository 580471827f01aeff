"""Shared fixtures: a sandbox server factory on loopback and clients connected to it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio

from cloudonex_async import Client, LocalLimiter, RetryPolicy
from cloudonex_async.testing import SandboxServer
from cloudonex_async.testing._process import listening_process

SandboxFactory = Callable[..., Awaitable[SandboxServer]]
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def wait_until(condition: Callable[[], bool], *, timeout: float = 5.0) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    for _ in range(int(timeout / 0.002)):
        if condition():
            return
        await asyncio.sleep(0.002)
    pytest.fail("the condition did not come true in time")


ClientFactory = Callable[..., Client]


def library_tasks() -> list[asyncio.Task[Any]]:
    """Tasks running code of the library itself (not the sandbox's, not the test's)."""
    found = []
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        where = code.co_filename if code is not None else ""
        if "cloudonex_async" in where and "testing" not in where:
            found.append(task)
    return found


# Short timeouts and backoff keep fault tests fast; the behaviour is the same.
FAST_RETRY = RetryPolicy(attempts=4, backoff_base=0.01, backoff_max=0.05)


@pytest_asyncio.fixture
async def make_sandbox() -> AsyncIterator[SandboxFactory]:
    """Start sandboxes with any settings; all are closed at the end of the test."""
    started: list[SandboxServer] = []

    async def make(**kwargs: Any) -> SandboxServer:
        sandbox = SandboxServer(**kwargs)
        await sandbox.start()
        started.append(sandbox)
        return sandbox

    yield make
    for sandbox in started:
        await sandbox.close()


@pytest_asyncio.fixture
async def sandbox(make_sandbox: SandboxFactory) -> SandboxServer:
    """A default sandbox: 1000 requests per hour, no faults."""
    return await make_sandbox()


@pytest_asyncio.fixture
async def make_client() -> AsyncIterator[ClientFactory]:
    """Build clients (own limiter, fast retries unless given); all closed at the end."""
    clients: list[Client] = []

    def make(sandbox: SandboxServer, **kwargs: Any) -> Client:
        kwargs.setdefault("limiter", LocalLimiter())
        kwargs.setdefault("retry", FAST_RETRY)
        kwargs.setdefault("timeout", 5.0)
        client = Client(base_url=sandbox.base_url, api_key=sandbox.api_key, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest_asyncio.fixture(params=["bearer", "query"])
async def client(
    request: pytest.FixtureRequest, sandbox: SandboxServer, make_client: ClientFactory
) -> Client:
    """A client of the default sandbox, in each auth mode."""
    return make_client(sandbox, auth=request.param)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server on a free loopback port, for the whole session.

    Where the binary is missing the tests that need it are skipped, saying why, except
    under CLOUDONEX_REQUIRE_REDIS=1 (set by .ci/run), where a missing server fails them.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CLOUDONEX_REQUIRE_REDIS") == "1":
            pytest.fail("redis-server is required here (CLOUDONEX_REQUIRE_REDIS=1) but missing")
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    workdir = tmp_path_factory.mktemp("redis")

    def command(port: int) -> list[str]:
        return [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(workdir),
            "--save",
            "",
            "--appendonly",
            "no",
        ]

    with listening_process(command, name="redis-server", timeout=10) as port:
        yield f"redis://127.0.0.1:{port}/0"


@contextlib.asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[str]:
    """Serve ``handler`` on a free loopback port; yield the base URL; tear everything down."""
    tasks: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
