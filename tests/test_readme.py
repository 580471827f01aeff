"""Every Python example in README.md runs, as written, against the sandbox.

Each example is a whole program, or, when its first line names a ``test_*.py`` file, a
whole test module. A block whose first line names another file (``# app.py``) is a
module a later test module imports: it is written next to every test module, and is
run through it. It runs in a subprocess with the README's placeholders swapped for
a sandbox on loopback: ``https://your-domain.com`` becomes the sandbox's URL,
``your-api-key-here`` its key, and ``redis://localhost:6379/0`` the tests' Redis.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import sys
from pathlib import Path

import pytest

from cloudonex_async.testing import SandboxServer

from .conftest import SandboxFactory

README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
_HEADING = re.compile(r"^#+ (.*)$", re.M)


def examples() -> list[tuple[str, str]]:
    """(name, code) of each Python block, named after the heading above it."""
    text = README.read_text(encoding="utf-8")
    found = []
    for number, match in enumerate(_BLOCK.finditer(text), start=1):
        headings = _HEADING.findall(text, 0, match.start())
        title = re.sub(r"\W+", "-", headings[-1].lower()).strip("-") if headings else "top"
        found.append((f"{number}-{title}", match.group(1)))
    return found


_NAMED = re.compile(r"# (\w+\.py)\n")
MODULES = {
    m.group(1): code
    for _, code in examples()
    if (m := _NAMED.match(code)) and not m.group(1).startswith("test_")
}


async def run(
    command: list[str], *, cwd: Path, env: dict[str, str], timeout: float
) -> tuple[int | None, str]:
    """Run a command; return its exit code and its output (stdout and stderr)."""
    process = await asyncio.create_subprocess_exec(
        *command, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=timeout)
    return process.returncode, output.decode()


EXAMPLES = [(name, code) for name, code in examples() if code not in MODULES.values()]


def fill_placeholders(code: str, sandbox: SandboxServer, request: pytest.FixtureRequest) -> str:
    """``code`` with the README's placeholders swapped for the sandbox and the tests' Redis."""
    code = code.replace("https://your-domain.com", sandbox.base_url)
    code = code.replace("your-api-key-here", sandbox.api_key)
    if "redis://" in code:
        redis_url: str = request.getfixturevalue("redis_url")
        code = code.replace("redis://localhost:6379/0", redis_url)
    return code


def test_the_readme_has_examples() -> None:
    assert len(EXAMPLES) >= 6
    tests = "".join(code for _, code in EXAMPLES if code.startswith("# test_"))
    for module in MODULES:  # every module is imported by some test module
        assert f"import {module[:-3]}" in tests or f"from {module[:-3]} " in tests


@pytest.mark.slow
@pytest.mark.parametrize(("name", "code"), EXAMPLES, ids=[name for name, _ in EXAMPLES])
async def test_readme_example_runs(
    name: str,
    code: str,
    make_sandbox: SandboxFactory,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    sandbox = await make_sandbox()
    code = fill_placeholders(code, sandbox, request)
    first_line = code.splitlines()[0]
    as_test = re.fullmatch(r"# (test_\w+\.py)", first_line)
    script = tmp_path / (as_test.group(1) if as_test else "example.py")
    script.write_text(code, encoding="utf-8")
    if as_test:
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
    # A test module runs as a user's would: pytest-asyncio in auto mode, as README says.
    pytest_args = [
        *("-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"),
        *("-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function"),
        *("--rootdir", str(tmp_path)),
    ]
    command = (
        [sys.executable, *pytest_args, str(script)] if as_test else [sys.executable, str(script)]
    )
    status, output = await run(command, cwd=tmp_path, env=env, timeout=120)
    assert status == 0, f"README example {name} failed:\n{output}"


def command_lines() -> list[list[str]]:
    """The ``cloudonex`` lines of the README's shell block under "The command line"."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## The command line") :]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    return [shlex.split(line, comments=True) for line in block.group(1).splitlines() if line]


@pytest.mark.slow
async def test_readme_command_lines_run(make_sandbox: SandboxFactory, tmp_path: Path) -> None:
    sandbox = await make_sandbox()
    sandbox.seed(
        "customers", [{"account": f"C {n}", "email": f"c{n}@example.com"} for n in range(7)]
    )
    (tmp_path / "people.csv").write_text(
        "account,email\nAda,ada@example.com\nAlan,alan@example.com\n"
    )
    env = {
        **os.environ,
        "CLOUDONEX_BASE_URL": sandbox.base_url,
        "CLOUDONEX_API_KEY": sandbox.api_key,
    }
    lines = command_lines()
    assert len(lines) >= 10
    for line in lines:
        assert line[0] == "cloudonex"
        if line[1] == "sandbox":
            continue  # serves until stopped; its options are tested with the sandbox
        command = [sys.executable, "-m", "cloudonex_async", *line[1:]]
        status, output = await run(command, cwd=tmp_path, env=env, timeout=60)
        assert status == 0, f"{' '.join(line)} failed:\n{output}"
    assert {str(r["email"]) for r in sandbox.records("customers")} == {
        "ada@example.com",
        "alan@example.com",
    }  # imported, then the sync deleted the rest (the seventh was deleted by hand)
