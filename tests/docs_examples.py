"""The fenced blocks of README.md and docs/**/*.md, read for the tests that run them.

A page's blocks are code (run by tests/test_docs.py) or explicitly not code:

- ``python``: a whole program, run in a subprocess. A block whose first line names a
  ``test_*.py`` file is a pytest module, run by pytest; one whose first line names another
  file (``# shop_app.py``) is a module that test modules import (see ``MODULES``).
- ``sh``: shell lines, each checked or run (see ``ShellLine``).
- ``text``, ``ini``, ``toml``, ``json``: not code (program output, configuration files,
  HTTP exchanges). A ``text title="Output"`` block right after a ``python`` block is that
  program's output, compared by the tests.
"""

from __future__ import annotations

import asyncio
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import attrs

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"

RUN = frozenset({"python", "sh"})
NOT_CODE = frozenset({"text", "ini", "toml", "json"})

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<info>[^`]*)$")
_HEADING = re.compile(r"^#{1,6} (.*)$")
_NAMED = re.compile(r"# (\w+\.py)\n")


@attrs.frozen
class Block:
    """One fenced block of a page."""

    page: str  # "README.md", or a path under docs/ ("guides/web-services.md")
    number: int  # 1-based, in the page
    line: int  # where its opening fence is, 1-based
    language: str  # "" when the fence names none
    title: str  # the fence's title="..." attribute, if any
    heading: str  # the heading it stands under
    code: str  # its text, dedented to the fence's indentation

    @property
    def name(self) -> str:
        """A test id: the page, the block's number and its heading."""
        slug = re.sub(r"\W+", "-", self.heading.lower()).strip("-") or "top"
        return f"{self.page}:{self.number}-{slug}"

    @property
    def module(self) -> str | None:
        """The file a python block names on its first line (``# name.py``), if any."""
        match = _NAMED.match(self.code)
        return match.group(1) if match else None

    @property
    def is_test_module(self) -> bool:
        """Whether this python block is a pytest module (``# test_x.py``)."""
        return (self.module or "").startswith("test_")

    @property
    def is_importable(self) -> bool:
        """Whether this python block is a module that test modules import."""
        return self.module is not None and not self.is_test_module


def pages() -> list[Path]:
    """README.md and every page of the documentation site."""
    return [README, *sorted(DOCS.rglob("*.md"))]


def page_name(path: Path) -> str:
    """How tests name a page: README.md, or its path under docs/."""
    path = path.resolve()
    return path.name if path == README else path.relative_to(DOCS).as_posix()


def blocks(path: Path) -> list[Block]:
    """Every fenced block of a page, in order."""
    found: list[Block] = []
    heading = ""
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if (match := _HEADING.match(line)) is not None:
            heading = match.group(1)
        fence = _FENCE.match(line)
        if fence is None:
            index += 1
            continue
        indent = fence.group("indent")
        info = fence.group("info").strip()
        language = info.split()[0] if info else ""
        title = re.search(r'title="([^"]*)"', info)
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        assert end < len(lines), f"{page_name(path)}:{index + 1}: the block is never closed"
        body = [
            text[len(indent) :] if text.startswith(indent) else text
            for text in lines[index + 1 : end]
        ]
        found.append(
            Block(
                page=page_name(path),
                number=len(found) + 1,
                line=index + 1,
                language=language,
                title=title.group(1) if title else "",
                heading=heading,
                code="\n".join(body) + "\n",
            )
        )
        index = end + 1
    return found


def all_blocks() -> list[Block]:
    """The blocks of every page."""
    return [block for path in pages() for block in blocks(path)]


def python_blocks() -> list[Block]:
    """Every python block of every page."""
    return [block for block in all_blocks() if block.language == "python"]


def _modules() -> dict[str, str]:
    found: dict[str, str] = {}
    for block in python_blocks():
        if block.is_importable:
            assert block.module not in found, f"{block.name}: a second {block.module}"
            found[block.module] = block.code  # type: ignore[index]
    return found


MODULES = _modules()
"""The importable modules the pages define (``# shop_app.py``), by file name."""


def page_path(name: str) -> Path:
    """The file of a page named as ``page_name`` names it."""
    return README if name == README.name else DOCS / name


def expected_output(block: Block) -> str | None:
    """The ``text title="Output"`` block right after a python block, if there is one."""
    page = blocks(page_path(block.page))
    following = page[block.number] if block.number < len(page) else None
    if following is not None and following.language == "text" and following.title == "Output":
        return following.code
    return None


@attrs.frozen
class ShellLine:
    """One command of a ``sh`` block, as the tests treat it.

    kind is ``cloudonex`` (run against a sandbox), ``sandbox`` (``cloudonex sandbox``:
    started, then stopped), ``background-sandbox`` (``cloudonex sandbox ... &``: the
    sandbox a page's walkthrough starts, run verbatim by the walkthrough test),
    ``export`` (environment for that walkthrough), ``pip`` (checked against
    pyproject.toml) or ``make`` (checked against the Makefile).
    """

    kind: str
    words: tuple[str, ...]
    text: str


def shell_lines(block: Block) -> list[ShellLine]:
    """The commands of a ``sh`` block; an unknown command fails the test."""
    found = []
    for text in block.code.replace("\\\n", " ").splitlines():
        words = shlex.split(text, comments=True)
        if not words:
            continue
        background = words[-1] == "&"
        if background:
            words = words[:-1]
        if words[:2] == ["cloudonex", "sandbox"]:
            kind = "background-sandbox" if background else "sandbox"
        elif background:
            raise AssertionError(f"{block.name}: only a sandbox may run in the background: {text}")
        elif words[0] == "cloudonex":
            kind = "cloudonex"
        elif words[0] in ("export", "pip", "make"):
            kind = words[0]
        else:
            raise AssertionError(f"{block.name}: the tests cannot run or check {text!r}")
        found.append(ShellLine(kind, tuple(words), text))
    return found


def walkthroughs() -> Iterator[tuple[Block, Block]]:
    """Each ``sh`` block that starts a sandbox in the background, with the python block
    that follows it: run verbatim, in that environment, by the walkthrough test."""
    for path in pages():
        page = blocks(path)
        for at, block in enumerate(page):
            if block.language != "sh":
                continue
            kinds = {line.kind for line in shell_lines(block)}
            if "background-sandbox" not in kinds:
                continue
            following = next((b for b in page[at + 1 :] if b.language == "python"), None)
            assert following is not None, f"{block.name}: no python block follows the sandbox"
            yield block, following


async def run(
    command: list[str], *, cwd: Path, env: dict[str, str], timeout: float
) -> tuple[int | None, str]:
    """Run a command; return its exit code and its output (stdout and stderr)."""
    process = await asyncio.create_subprocess_exec(
        *command, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=timeout)
    return process.returncode, output.decode()
