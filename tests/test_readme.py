"""README.md stays short, starts users off right, and links where the package index can follow.

Its code blocks are run with every page's by tests/test_docs.py, its Quick start verbatim
(the sandbox command it shows, then the program, unchanged) by the walkthrough test there.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from .docs_examples import DOCS, README, ROOT, blocks, shell_lines, walkthroughs

DOCS_URL = "https://cloudonex-async.readthedocs.io/en/latest/"
MAX_LINES = 250
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_the_readme_is_short() -> None:
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, (
        f"README.md has {lines} lines; at most {MAX_LINES}: move some to docs/"
    )


def test_the_readme_shows_the_two_set_up_commands() -> None:
    commands = [
        line.words
        for block in blocks(README)
        if block.language == "sh"
        for line in shell_lines(block)
    ]
    assert ("make", "demo") in commands
    assert ("make", "test") in commands


def test_the_quick_start_is_a_walkthrough_that_reads_the_environment() -> None:
    [(commands, program)] = [(sh, py) for sh, py in walkthroughs() if sh.page == README.name]
    assert commands.heading == program.heading == "Quick start"
    [start] = [line for line in shell_lines(commands) if line.kind == "background-sandbox"]
    assert start.words[:2] == ("cloudonex", "sandbox")
    exported = {
        word.partition("=")[0]
        for line in shell_lines(commands)
        if line.kind == "export"
        for word in line.words[1:]
    }
    assert exported == {"CLOUDONEX_BASE_URL", "CLOUDONEX_API_KEY"}
    # The program takes its server and key from the environment, as it says.
    assert "Client()" in program.code
    assert "base_url" not in program.code
    assert "api_key" not in program.code
    assert "http" not in program.code


def doc_page(url: str) -> Path | None:
    """The docs/ page an absolute documentation URL names, if there is one."""
    path = url.removeprefix(DOCS_URL).split("#")[0].strip("/")
    for candidate in (DOCS / f"{path}.md", DOCS / path / "index.md"):
        if candidate.exists():
            return candidate
    return None


def test_the_readme_links_work_from_the_package_index() -> None:
    """Absolute links only (the package index shows README.md outside the source tree),
    and each link to the documentation names a page the site has."""
    links = _LINK.findall(README.read_text(encoding="utf-8"))
    assert links
    for link in links:
        assert link.startswith("https://"), f"README.md links to {link!r}: make it absolute"
        if link.startswith(DOCS_URL):
            assert doc_page(link) is not None, f"README.md links to {link}: no such page"


def test_the_documentation_url_is_the_same_everywhere() -> None:
    mkdocs = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert f"site_url: {DOCS_URL}\n" in mkdocs
    urls = metadata.metadata("cloudonex-async").get_all("Project-URL") or []
    assert f"Documentation, {DOCS_URL}" in urls
    assert f"Changelog, {DOCS_URL}changelog/" in urls
    assert (DOCS / "changelog.md").exists()
