"""pytest fixtures for users' own tests (registered through the ``pytest11`` entry point).

``cloudonex_sandbox`` is a started :class:`SandboxServer` (function scope);
``cloudonex_client`` is a :class:`~cloudonex_async.Client` connected to it. Both need
pytest-asyncio; without it this plugin defines nothing.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator

if importlib.util.find_spec("pytest_asyncio") is not None:
    import pytest_asyncio

    from .. import Client, LocalLimiter
    from ._sandbox import SandboxServer

    @pytest_asyncio.fixture
    async def cloudonex_sandbox() -> AsyncIterator[SandboxServer]:
        """A CloudOnex sandbox server on loopback, empty, with the default budget."""
        async with SandboxServer() as sandbox:
            yield sandbox

    @pytest_asyncio.fixture
    async def cloudonex_client(cloudonex_sandbox: SandboxServer) -> AsyncIterator[Client]:
        """A Client connected to ``cloudonex_sandbox``, with a limiter of its own."""
        async with Client(
            base_url=cloudonex_sandbox.base_url,
            api_key=cloudonex_sandbox.api_key,
            limiter=LocalLimiter(),
        ) as client:
            yield client
