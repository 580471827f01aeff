"""Every code block of README.md and of the documentation site (docs/) runs as written.

- A ``python`` block is a whole program, run in a subprocess against a sandbox on
  loopback, with the pages' placeholders swapped in: ``https://your-domain.com`` becomes
  the sandbox's URL, ``your-api-key-here`` its key, ``redis://localhost:6379/0`` the
  tests' Redis; ``CLOUDONEX_BASE_URL`` and ``CLOUDONEX_API_KEY`` name the sandbox too.
  A block whose first line names a ``test_*.py`` file is a pytest module, run by pytest
  (as a user would: pytest-asyncio in auto mode); one that names another file
  (``# shop_app.py``) is a module the test modules import, written next to each. A
  ``text title="Output"`` block right after a program is what it must print.
- A ``sh`` block's ``cloudonex`` lines run in order against a sandbox seeded with seven
  customers, next to a ``people.csv``; ``cloudonex sandbox`` lines start a sandbox (on
  a free port) and stop it; ``pip install`` lines are checked against pyproject.toml and
  ``make`` lines against the Makefile. A block that starts a sandbox in the background
  is a walkthrough: its commands run verbatim, then the program after it, unchanged.
- Any other block must be marked as not code (``text``, ``ini``...), or this fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import os
import re
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from cloudonex_async.testing import SandboxServer

from .conftest import SandboxFactory
from .docs_examples import (
    MODULES,
    NOT_CODE,
    ROOT,
    RUN,
    Block,
    ShellLine,
    all_blocks,
    expected_output,
    pages,
    python_blocks,
    run,
    shell_lines,
    walkthroughs,
)

PROGRAMS = [block for block in python_blocks() if not block.is_importable]
SHELL = [
    block
    for block in all_blocks()
    if block.language == "sh"
    and all(line.kind != "background-sandbox" for line in shell_lines(block))
]
WALKTHROUGHS = list(walkthroughs())


def cloudonex_command() -> list[str]:
    """How to run the ``cloudonex`` command installed with this interpreter."""
    script = Path(sys.executable).with_name("cloudonex")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cloudonex_async"]


def fill_placeholders(code: str, sandbox: SandboxServer, request: pytest.FixtureRequest) -> str:
    """``code`` with the pages' placeholders swapped for the sandbox and the tests' Redis."""
    code = code.replace("https://your-domain.com", sandbox.base_url)
    code = code.replace("your-api-key-here", sandbox.api_key)
    if "redis://" in code:
        redis_url: str = request.getfixturevalue("redis_url")
        code = code.replace("redis://localhost:6379/0", redis_url)
    return code


def test_every_block_is_code_or_marked_not_code() -> None:
    for block in all_blocks():
        assert block.language in RUN | NOT_CODE, (
            f"{block.name} (line {block.line}): a ```{block.language} block; the tests run "
            f"{sorted(RUN)} blocks; mark anything else as one of {sorted(NOT_CODE)}"
        )


def test_the_pages_have_examples() -> None:
    assert len(pages()) >= 10
    assert len(PROGRAMS) >= 20
    assert len(SHELL) >= 4
    assert WALKTHROUGHS


def test_every_module_is_imported_by_a_test_module() -> None:
    tests = "".join(block.code for block in PROGRAMS if block.is_test_module)
    for module in MODULES:
        name = module.removesuffix(".py")
        assert f"import {name}" in tests or f"from {name} " in tests, module


def test_the_pages_speak_to_users() -> None:
    """No internal notes: issue numbers, the project's shared folder."""
    for path in pages():
        text = path.read_text(encoding="utf-8")
        assert "shared/" not in text, path
        assert re.search(r"\(#\d+\)|[Ii]ssue #?\d+", text) is None, path


@pytest.mark.slow
@pytest.mark.parametrize("block", PROGRAMS, ids=[block.name for block in PROGRAMS])
async def test_python_block_runs(
    block: Block, make_sandbox: SandboxFactory, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    sandbox = await make_sandbox()
    code = fill_placeholders(block.code, sandbox, request)
    script = tmp_path / (block.module if block.is_test_module else "example.py")  # type: ignore[operator]
    script.write_text(code, encoding="utf-8")
    if block.is_test_module:
        for module, text in MODULES.items():
            (tmp_path / module).write_text(
                fill_placeholders(text, sandbox, request), encoding="utf-8"
            )
    env = {
        **os.environ,
        "CLOUDONEX_BASE_URL": sandbox.base_url,
        "CLOUDONEX_API_KEY": sandbox.api_key,
        "PYTHONWARNINGS": "error",
    }
    # A test module runs as a user's would: pytest-asyncio in auto mode, as the page says.
    pytest_args = [
        *("-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"),
        *("-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function"),
        *("--rootdir", str(tmp_path)),
    ]
    command = (
        [sys.executable, *pytest_args, str(script)]
        if block.is_test_module
        else [sys.executable, str(script)]
    )
    status, output = await run(command, cwd=tmp_path, env=env, timeout=120)
    assert status == 0, f"{block.name} failed:\n{output}"
    expected = expected_output(block)
    if expected is not None:
        assert output == expected, f"{block.name} printed:\n{output}"


def check_pip(line: ShellLine, block: Block) -> None:
    """A ``pip install`` line names this package and extras it has."""
    ours = metadata.metadata("cloudonex-async")
    assert line.words[1] == "install", line.text
    for word in line.words[2:]:
        requirement = Requirement(word)
        assert requirement.name == ours["Name"], f"{block.name}: {line.text}"
        assert requirement.extras <= set(ours.get_all("Provides-Extra") or ()), line.text


def check_make(line: ShellLine, block: Block) -> None:
    """A ``make`` line names targets the Makefile has."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in line.words[1:]:
        assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"{block.name}: {line.text}"


@contextlib.asynccontextmanager
async def sandbox_running(
    line: ShellLine, args: Sequence[str], cwd: Path, env: dict[str, str]
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run a ``cloudonex sandbox`` line (with ``args`` added) until the block ends.

    It is up once it says where it listens (its first line: no sleep); it is stopped
    with SIGINT, as Ctrl-C would, and killed if that takes over 20 s.
    """
    process = await asyncio.create_subprocess_exec(
        *cloudonex_command(),
        *line.words[1:],
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert process.stdout is not None
        first = await asyncio.wait_for(process.stdout.readline(), timeout=20)
        assert first.startswith(b"CloudOnex sandbox"), f"{line.text}:\n{first.decode()}"
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), timeout=20)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()


async def started_and_stopped(line: ShellLine, cwd: Path, env: dict[str, str]) -> None:
    """Start a ``cloudonex sandbox`` line on a free port; stop it once it listens."""
    async with sandbox_running(line, ("--port", "0"), cwd, env) as process:
        pass
    assert process.returncode == 0, f"{line.text}: ended with {process.returncode}"


@pytest.mark.slow
@pytest.mark.parametrize("block", SHELL, ids=[block.name for block in SHELL])
async def test_shell_block_runs(block: Block, make_sandbox: SandboxFactory, tmp_path: Path) -> None:
    lines = shell_lines(block)
    sandbox = await make_sandbox()
    sandbox.seed(
        "customers", [{"account": f"C {n}", "email": f"c{n}@example.com"} for n in range(7)]
    )
    (tmp_path / "people.csv").write_text(
        "account,email\nAda,ada@example.com\nAlan,alan@example.com\n"
    )
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("CLOUDONEX_")},
        "CLOUDONEX_BASE_URL": sandbox.base_url,
        "CLOUDONEX_API_KEY": sandbox.api_key,
    }
    for line in lines:
        if line.kind == "pip":
            check_pip(line, block)
        elif line.kind == "make":
            check_make(line, block)
        elif line.kind == "sandbox":
            await started_and_stopped(line, tmp_path, env)
        elif line.kind == "cloudonex":
            command = [*cloudonex_command(), *line.words[1:]]
            status, output = await run(command, cwd=tmp_path, env=env, timeout=60)
            assert status == 0, f"{block.name}: {line.text} failed:\n{output}"
        else:
            pytest.fail(f"{block.name}: {line.text!r} belongs in a walkthrough, after a sandbox")


def sandbox_address(line: ShellLine) -> tuple[str, int]:
    """The host and port a ``cloudonex sandbox`` line listens on."""
    from cloudonex_async.testing.__main__ import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(list(line.words[2:]))
    return str(args.host), int(args.port)


async def port_taken(host: str, port: int) -> bool:
    """Whether something already accepts connections there."""
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


@pytest.mark.slow
@pytest.mark.parametrize(
    ("commands", "program"), WALKTHROUGHS, ids=[sh.name for sh, _ in WALKTHROUGHS]
)
async def test_walkthrough_runs_verbatim(commands: Block, program: Block, tmp_path: Path) -> None:
    """The page's shell commands as shown (but the ``&``), then its program, unchanged."""
    lines = shell_lines(commands)
    [start] = [line for line in lines if line.kind == "background-sandbox"]
    exports = [line for line in lines if line.kind == "export"]
    assert len(lines) == 1 + len(exports), f"{commands.name}: only a sandbox and exports"
    host, port = sandbox_address(start)
    async with port_lock(port):  # two test runs on one machine take turns with the port
        await run_walkthrough(commands, program, start, exports, (host, port), tmp_path)


@contextlib.asynccontextmanager
async def port_lock(port: int) -> AsyncIterator[None]:
    """Hold an exclusive lock, shared by every process on this machine, named after ``port``."""
    path = Path(tempfile.gettempdir()) / f"cloudonex-walkthrough-{port}.lock"
    with open(path, "w") as handle:  # noqa: ASYNC230 - a lock file, opened once
        await asyncio.wait_for(asyncio.to_thread(fcntl.flock, handle, fcntl.LOCK_EX), 300)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


async def run_walkthrough(
    commands: Block,
    program: Block,
    start: ShellLine,
    exports: list[ShellLine],
    address: tuple[str, int],
    tmp_path: Path,
) -> None:
    """Start the sandbox line, apply the exports, run the program, compare its output."""
    host, port = address
    if await port_taken(host, port):
        pytest.fail(
            f"{commands.name} starts its sandbox on {host}:{port}, which something else "
            "already listens on: stop it (or wait for the other test run) and run this again"
        )
    env = {name: value for name, value in os.environ.items() if not name.startswith("CLOUDONEX_")}
    for line in exports:
        for assignment in line.words[1:]:
            name, _, value = assignment.partition("=")
            env[name] = value
    env["PYTHONWARNINGS"] = "error"
    expected = expected_output(program)
    assert expected is not None, f"{program.name}: a walkthrough shows its output"
    async with sandbox_running(start, (), tmp_path, env):  # exactly as shown, but the &
        script = tmp_path / "example.py"
        script.write_text(program.code, encoding="utf-8")
        status, output = await run([sys.executable, str(script)], cwd=tmp_path, env=env, timeout=60)
    assert status == 0, f"{program.name} failed:\n{output}"
    assert output == expected, f"{program.name} printed:\n{output}"
