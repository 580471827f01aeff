"""``cloudonex doctor``: what the configured server really does, as a table or JSON."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import textwrap
from typing import TextIO

from .._client import Client
from .._doctor import Diagnosis
from .._findings import Finding
from ._exits import AUTH, OK, RATE_LIMITED, UNREACHABLE, USAGE
from ._flags import as_flags


async def cmd_doctor(client: Client, args: argparse.Namespace) -> int:
    """Diagnose the configured server; exit 0 if the configuration works as set."""
    return report(await client.diagnose(), args)


def cannot_start(error: Exception, args: argparse.Namespace) -> int:
    """Report a configuration no Client can be made of as the diagnosis it is."""
    finding = Finding("config", "problem", as_flags(" ".join(str(error).split())))
    return report(Diagnosis((finding,), 0), args)


def report(diagnosis: Diagnosis, args: argparse.Namespace) -> int:
    """Print the diagnosis as asked (a table or JSON); return the exit status."""
    status = exit_status(diagnosis)
    try:
        if args.format == "json":
            print(json.dumps(diagnosis.to_dict(), indent=2))
        else:
            print_table(diagnosis, sys.stdout)
    except BrokenPipeError:  # its reader has gone: the verdict still decides the status
        pass
    return status


def exit_status(diagnosis: Diagnosis) -> int:
    """0 when the configuration works as set; else the status of the first problem.

    7: the server cannot be reached (or fails); 3: it refuses the key (no option fixes
    that); 6: the key's budget is spent; 2: a setting to change.
    """
    for finding in diagnosis.problems:
        if finding.check in ("reachable", "tls"):
            return UNREACHABLE
        if finding.check == "auth" and not finding.fix:
            return AUTH
        if finding.check == "store":
            return UNREACHABLE
        if finding.check == "budget":
            return RATE_LIMITED
        return USAGE
    return OK


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
        print(f"\n{verdict}not work as set (what to do is under each; {sent} sent)", file=out)
        if any(f.fix for f in diagnosis.problems):
            how = (
                "Flags can also be set as CLOUDONEX_* environment variables "
                "(CLOUDONEX_AUTH=query) or in the config file; in Python, as Client(...) "
                "arguments (auth='query')."
            )
            print("\n".join(textwrap.wrap(how, width, break_on_hyphens=False)), file=out)
    else:
        print(f"\nthe configuration works as set ({sent} sent)", file=out)


def _lines(finding: Finding, check_width: int, indent: str, width: int) -> list[str]:
    status = finding.status.upper() if finding.status == "problem" else finding.status
    head = f"{finding.check:<{check_width}}  {status:<7}  "
    lines = textwrap.wrap(
        finding.summary,
        width,
        initial_indent=head,
        subsequent_indent=indent,
        break_on_hyphens=False,
    ) or [head]
    if finding.advice:
        lines += textwrap.wrap(
            as_flags(finding.advice),
            width,
            initial_indent=indent + "→ ",
            subsequent_indent=indent + "  ",
            break_on_hyphens=False,
        )
    return lines
