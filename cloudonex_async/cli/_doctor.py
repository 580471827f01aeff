"""``cloudonex doctor``: what the configured server really does, as a table or JSON."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import textwrap
from typing import TextIO

from .._client import Client
from .._doctor import Diagnosis, Finding

# Exit statuses (as the other commands use them).
_OK, _CONFIG, _AUTH, _RATE_LIMITED, _UNREACHABLE = 0, 2, 3, 6, 7


async def cmd_doctor(client: Client, args: argparse.Namespace) -> int:
    """Diagnose the configured server; exit 0 if the configuration works as set."""
    diagnosis = await client.diagnose()
    if args.format == "json":
        print(json.dumps(diagnosis.to_dict(), indent=2))
    else:
        print_table(diagnosis, sys.stdout)
    return exit_status(diagnosis)


def exit_status(diagnosis: Diagnosis) -> int:
    """0 when the configuration works as set; else the status of the first problem."""
    for finding in diagnosis.problems:
        if finding.check in ("reachable", "tls"):
            return _UNREACHABLE
        if finding.check == "auth" and "both ways" in finding.summary:
            return _AUTH
        if finding.check == "rate_limit":
            return _RATE_LIMITED
        return _CONFIG
    return _OK


def print_table(diagnosis: Diagnosis, out: TextIO) -> None:
    """One line per finding (its advice indented below it), then the verdict."""
    width = max(60, min(shutil.get_terminal_size((100, 24)).columns, 120))
    check_width = max(len(f.check) for f in diagnosis.findings)
    indent = " " * (check_width + 11)  # under FINDING
    print(f"{'CHECK':<{check_width}}  STATUS   FINDING", file=out)
    for finding in diagnosis.findings:
        for line in _lines(finding, check_width, indent, width):
            print(line, file=out)
    problems = len(diagnosis.problems)
    sent = f"{diagnosis.requests} request{'s' if diagnosis.requests != 1 else ''}"
    if problems:
        verdict = f"{problems} problem{'s' if problems > 1 else ''}: the configuration does "
        print(f"\n{verdict}not work as set (the fix is under each; {sent} sent)", file=out)
    else:
        print(f"\nthe configuration works as set ({sent} sent)", file=out)


_OPTION = re.compile(r"\b(profile|auth|route_style|body_encoding|item_paths)='(\w+)'")


def as_flags(advice: str) -> str:
    """The advice in the command line's words: ``--auth query`` for ``auth='query'``."""
    return _OPTION.sub(lambda m: f"--{m.group(1).replace('_', '-')} {m.group(2)}", advice)


def _lines(finding: Finding, check_width: int, indent: str, width: int) -> list[str]:
    status = finding.status.upper() if finding.status == "problem" else finding.status
    head = f"{finding.check:<{check_width}}  {status:<7}  "
    lines = textwrap.wrap(
        finding.summary, width, initial_indent=head, subsequent_indent=indent
    ) or [head]
    if finding.advice:
        lines += textwrap.wrap(
            as_flags(finding.advice),
            width,
            initial_indent=indent + "→ ",
            subsequent_indent=indent + "  ",
        )
    return lines
