"""close_on_signals: a signal closes the client at once and still reaches its old handler."""

from __future__ import annotations

import asyncio
import signal
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from cloudonex_async import Client, ConfigurationError, LocalLimiter, close_on_signals
from cloudonex_async.testing import FakeClock, MockTransport, json_response

from .conftest import ClientFactory, SandboxFactory, wait_until
from .docs_examples import run

SIGNAL = signal.SIGUSR1  # SIGINT is pytest's


class Recorder:
    """A previous handler that notes each signal it is passed."""

    def __init__(self) -> None:
        self.got: list[int] = []

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.got.append(signum)


@pytest.fixture
def previous() -> Iterator[Recorder]:
    """A recording SIGUSR1 handler, the one installed before each test."""
    recorder = Recorder()
    old = signal.signal(SIGNAL, recorder)
    yield recorder
    signal.signal(SIGNAL, old)


def installed() -> object:
    """The SIGUSR1 handler now."""
    return signal.getsignal(SIGNAL)


def mock_client() -> Client:
    """A client that never reaches a server."""
    return Client(
        base_url="https://crm.example.com",
        api_key="key",
        transport=MockTransport(lambda request: json_response({"success": True, "data": {}})),
    )


async def test_a_signal_wakes_the_waiting_calls_and_reaches_the_old_handler(
    previous: Recorder, make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    clock = FakeClock(auto_advance=False)  # the window never ends by itself
    sandbox = await make_sandbox(rate_limit=1, rate_period=3600, clock=clock)
    [jane] = sandbox.seed("customers", [{"account": "Jane Doe"}])
    client = make_client(sandbox, limiter=LocalLimiter(clock=clock))
    await client.customers.get(jane)  # the window's one request; the next ones wait
    async with close_on_signals(client, [SIGNAL]) as closer:
        assert list(closer.signals) == [SIGNAL]
        waiting = [asyncio.ensure_future(client.customers.get(jane)) for _ in range(5)]
        await wait_until(lambda: client.rate_limit.waits == 5)
        signal.raise_signal(SIGNAL)
        assert previous.got == [SIGNAL]  # passed on at once
        done, _ = await asyncio.wait(waiting, timeout=2)
        assert len(done) == 5
        for call in waiting:
            with pytest.raises(ConfigurationError, match="closed"):
                call.result()
        assert client.closed
        await wait_until(lambda: installed() is previous)  # put back
        assert closer.signals == ()
    assert sandbox.count() == 1


async def test_leaving_the_block_puts_the_old_handlers_back(previous: Recorder) -> None:
    async with mock_client() as client:
        async with close_on_signals(client, [SIGNAL, SIGNAL]) as closer:
            assert installed() is not previous
        assert installed() is previous
        closer.undo()  # idempotent
        assert not client.closed
        signal.raise_signal(SIGNAL)
        assert previous.got == [SIGNAL]
        assert not client.closed


async def test_a_handler_installed_later_stays_and_may_pass_signals_on(
    previous: Recorder,
) -> None:
    async with mock_client() as client:
        closer = close_on_signals(client, [SIGNAL])
        ours = signal.getsignal(SIGNAL)
        assert callable(ours)
        later = Recorder()

        def on_top(signum: int, frame: FrameType | None) -> None:
            later(signum, frame)
            ours(signum, frame)  # a handler that chains to the one before

        signal.signal(SIGNAL, on_top)
        closer.undo()
        assert installed() is on_top  # not ours to take away
        signal.raise_signal(SIGNAL)
        assert later.got == previous.got == [SIGNAL]
        await asyncio.sleep(0)
        assert not client.closed  # undone: it only passes the signal on


async def test_a_client_closed_otherwise_steps_aside(previous: Recorder) -> None:
    client = mock_client()
    closer = close_on_signals(client, [SIGNAL])
    await client.close()
    signal.raise_signal(SIGNAL)
    assert previous.got == [SIGNAL]
    assert installed() is previous
    assert closer.signals == ()


async def test_an_ignored_signal_stays_ignored_but_closes_the_client() -> None:
    old = signal.signal(SIGNAL, signal.SIG_IGN)
    try:
        async with mock_client() as client:
            async with close_on_signals(client, [SIGNAL]):
                signal.raise_signal(SIGNAL)
                await wait_until(lambda: client.closed)
            assert signal.getsignal(SIGNAL) == signal.SIG_IGN
    finally:
        signal.signal(SIGNAL, old)


async def test_off_the_main_thread_it_does_nothing(previous: Recorder) -> None:
    async def elsewhere() -> tuple[int, ...]:
        async with mock_client() as client:
            async with close_on_signals(client, [SIGNAL]) as closer:
                return closer.signals

    def in_a_thread() -> tuple[int, ...]:
        assert threading.current_thread() is not threading.main_thread()
        return asyncio.run(elsewhere())

    assert await asyncio.to_thread(in_a_thread) == ()
    assert installed() is previous


async def test_it_needs_an_open_client_and_a_running_loop(previous: Recorder) -> None:
    client = mock_client()
    await client.close()
    with pytest.raises(ConfigurationError, match="closed"):
        close_on_signals(client, [SIGNAL])

    def without_loop() -> None:
        close_on_signals(mock_client(), [SIGNAL])

    with pytest.raises(ConfigurationError, match="event loop"):
        await asyncio.to_thread(without_loop)
    assert installed() is previous


@pytest.mark.slow
@pytest.mark.skipif(
    sys.platform == "win32", reason="Windows has no POSIX SIGTERM to send a process"
)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_the_signal_is_never_swallowed(
    signum: int, tmp_path: Path, make_sandbox: SandboxFactory
) -> None:
    """Without a server's handler, the process still ends as the signal says.

    SIGTERM's default action ends it; SIGINT's default handler raises KeyboardInterrupt,
    which Python turns into an exit by SIGINT.
    """
    sandbox = await make_sandbox()
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(f"""
            import asyncio, os, signal
            from cloudonex_async import Client, close_on_signals

            async def main() -> None:
                async with Client(base_url={sandbox.base_url!r}, api_key="k") as client:
                    async with close_on_signals(client):
                        os.kill(os.getpid(), {int(signum)})
                        await asyncio.Event().wait()  # until the signal ends it
                print("not reached")

            asyncio.run(main())
        """),
        encoding="utf-8",
    )
    env = {"PYTHONWARNINGS": "error"}
    status, output = await run([sys.executable, str(script)], cwd=tmp_path, env=env, timeout=20)
    assert status == -signum, output
    assert "not reached" not in output
    if signum == signal.SIGINT:
        assert "KeyboardInterrupt" in output


async def test_a_signal_that_cannot_be_handled_leaves_every_handler_alone(
    previous: Recorder,
) -> None:
    async with mock_client() as client:
        with pytest.raises((OSError, ValueError)):
            close_on_signals(client, [SIGNAL, signal.SIGKILL])
        assert installed() is previous
