"""MkDocs hooks: the changelog page, and docstrings' Sphinx roles read as plain code."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

CHANGELOG = Path(__file__).resolve().parent / "CHANGELOG.md"
_ISSUES = re.compile(r" \(#\d+(?:, #\d+)*\)")
# Docstrings say :class:`Client` and :class:`~cloudonex_async.Secret`; Markdown renders
# that as ":class:<code>Client</code>": keep the code, drop the role and the path.
_ROLE = re.compile(r":(?:class|meth|func|mod|data|attr|exc|obj):(?=<code>)")
_SHORTENED = re.compile(r"<code>~(?:\w+\.)*(\w+)</code>")


def on_page_markdown(markdown: str, *, page: Any, config: Any, files: Any) -> str:
    """Serve CHANGELOG.md as docs/changelog.md (whose own text only says so)."""
    if page.file.src_uri != "changelog.md":
        return markdown
    return _ISSUES.sub("", CHANGELOG.read_text(encoding="utf-8"))


def on_page_content(html: str, *, page: Any, config: Any, files: Any) -> str:
    """Drop the Sphinx roles the API reference's docstrings use."""
    return _SHORTENED.sub(r"<code>\1</code>", _ROLE.sub("", html))
