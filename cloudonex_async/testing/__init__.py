"""Testing helpers: an embedded CloudOnex sandbox server, a mock transport, a fake clock.

Run the sandbox in your own tests::

    from cloudonex_async import Client
    from cloudonex_async.testing import SandboxServer

    async with SandboxServer() as sandbox:
        async with Client(base_url=sandbox.base_url, api_key=sandbox.api_key) as client:
            ...

``MockTransport`` answers a Client's requests from a function, with no server at all
(``Client(transport=MockTransport(handler))``), for answers a sandbox cannot give;
or use the pytest fixture ``cloudonex_sandbox`` (registered automatically when
pytest-asyncio is installed), or from the shell:
``python -m cloudonex_async.testing --port 8080``.
"""

from ._clock import FakeClock
from ._http import LoggedRequest
from ._mock import MockTransport, json_response
from ._sandbox import Fault, Faults, SandboxServer

__all__ = [
    "FakeClock",
    "Fault",
    "Faults",
    "LoggedRequest",
    "MockTransport",
    "SandboxServer",
    "json_response",
]
