"""The ``cloudonex`` command: parse, configure a Client, run one command, exit with a code.

Configuration comes from flags, then environment variables (``CLOUDONEX_BASE_URL``,
``CLOUDONEX_API_KEY``, ``CLOUDONEX_PROFILE``, ``CLOUDONEX_AUTH``,
``CLOUDONEX_BODY_ENCODING``, ``CLOUDONEX_ROUTE_STYLE``, ``CLOUDONEX_ITEM_PATHS``), then an
INI file (``--config``, ``CLOUDONEX_CONFIG``, or ``~/.config/cloudonex/config.ini``)
with the same names in a ``[cloudonex]`` section. The key is never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import configparser
import contextlib
import json
import os
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO, cast

from .._client import Client
from .._outcomes import BulkResult, Outcome, SyncOutcome, SyncPlan, SyncResult
from ..errors import (
    AuthenticationError,
    CloudOnexError,
    ConfigurationError,
    InputChangedError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    TransportError,
    UnsupportedError,
)
from ..models import Model
from ..resources import RECORD_RESOURCES, Resource
from ._doctor import cannot_start, cmd_doctor
from ._exits import (
    API,
    AUTH,
    EXIT_CODES,
    INTERRUPTED,
    NOT_FOUND,
    OK,
    PARTIAL,
    RATE_LIMITED,
    UNREACHABLE,
    UNSUPPORTED,
    USAGE,
)
from ._files import (
    Format,
    RecordWriter,
    as_row,
    columns_of,
    count_records,
    format_of,
    line_numbers,
    read_records,
    write_failures,
)
from ._flags import as_flags
from ._progress import ProgressBar

RESOURCES = tuple(resource.path for resource in RECORD_RESOURCES)
SETTINGS = (
    "base_url",
    "api_key",
    "profile",
    "auth",
    "body_encoding",
    "route_style",
    "item_paths",
    "rate_limit",
    "rate_period",
    "max_response_bytes",
)
# The settings that are numbers (read from text in the environment and the config file).
NUMBERS: Mapping[str, Callable[[str], float]] = {
    "rate_limit": int,
    "rate_period": float,
    "max_response_bytes": int,
}


class UsageError(Exception):
    """A command line the command cannot run; exit code 2."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like the command's others."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE, f"cloudonex: error: {message} (see `{self.prog} --help`)\n")


# -- configuration ----------------------------------------------------------------------


def load_settings(args: argparse.Namespace) -> dict[str, str]:
    """The client settings: flags, then environment variables, then the config file."""
    path = args.config or os.environ.get("CLOUDONEX_CONFIG")
    default = Path.home() / ".config" / "cloudonex" / "config.ini"
    from_file: Mapping[str, str] = {}
    if path or default.exists():
        parser = configparser.ConfigParser()
        chosen = Path(path) if path else default
        if not chosen.exists():
            raise UsageError(f"the config file {chosen} does not exist")
        parser.read(chosen, encoding="utf-8")
        if parser.has_section("cloudonex"):
            from_file = dict(parser["cloudonex"])
    settings: dict[str, str] = {}
    for name in SETTINGS:
        value = getattr(args, name, None) or os.environ.get(f"CLOUDONEX_{name.upper()}")
        value = value or from_file.get(name)
        if value:
            settings[name] = str(value)
    return settings


def make_client(args: argparse.Namespace) -> Client:
    """A Client from the resolved settings."""
    settings: dict[str, Any] = load_settings(args)
    for name, number in NUMBERS.items():
        if name in settings:
            try:
                settings[name] = number(settings[name])
            except ValueError:
                flag = "--" + name.replace("_", "-")
                raise UsageError(
                    f"{flag} (or CLOUDONEX_{name.upper()}, or {name} in the config file) must "
                    f"be a number, not {settings[name]!r}"
                ) from None
    if "base_url" not in settings:
        raise UsageError(
            "no server: pass --base-url, set CLOUDONEX_BASE_URL, or put base_url in the config file"
        )
    if "api_key" not in settings:
        raise UsageError(
            "no API key: set CLOUDONEX_API_KEY (or api_key in the config file, or --api-key)"
        )
    return Client(
        **settings,
        timeout=args.timeout,
        max_wait=args.max_wait,
        allow_insecure_http=args.insecure_http,
    )


# -- the commands --------------------------------------------------------------------------


def _filters(pairs: Sequence[str]) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--filter takes key=value, not {pair!r}")
        if name in ("limit", "page", "page_size", "prefetch", "concurrency", "priority"):
            raise UsageError(f"--filter {name}=... is not a filter; see --limit and --page-size")
        filters[name] = value
    return filters


def _json_argument(text: str) -> dict[str, object]:
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        text = Path(text[1:]).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except ValueError as error:
        raise UsageError(f"--json is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise UsageError("--json must be a JSON object of fields")
    return data


def _print_json(value: object) -> None:
    print(json.dumps(value, default=str, indent=2, ensure_ascii=False))


def _stdout_format(args: argparse.Namespace) -> Format:
    """The format asked for, else a table on a terminal and JSON lines on a pipe."""
    chosen: Format | None = args.format
    return chosen or ("table" if sys.stdout.isatty() else "jsonl")


def _resource(client: Client, name: str) -> Resource[Model]:
    resource: Resource[Model] = getattr(client, name)
    return resource


def _say_if_empty(writer: RecordWriter, fmt: Format, what: str, filters: Sequence[str]) -> None:
    """Say on stderr that a table has no rows (``no customers matching email=x``).

    JSON lines and CSV stay as they are, for the programs that read them: nothing, or
    a CSV header alone.
    """
    if fmt == "table" and not writer.written:
        matching = f" matching {', '.join(filters)}" if filters else ""
        print(f"no {what}{matching}", file=sys.stderr)


async def cmd_list(client: Client, args: argparse.Namespace) -> int:
    """Stream a listing to stdout."""
    fmt = _stdout_format(args)
    resource = _resource(client, args.resource)
    writer = RecordWriter(sys.stdout, fmt, columns_of(resource.model) if fmt == "csv" else ())
    listing = resource.list(limit=args.limit, page_size=args.page_size, **_filters(args.filter))
    try:
        async for record in listing:
            writer.write(as_row(record))
    finally:  # what arrived is written, as JSON lines are, even if the listing fails
        writer.close()
    _say_if_empty(writer, fmt, args.resource, args.filter)
    return OK


async def cmd_export(client: Client, args: argparse.Namespace) -> int:
    """Stream a listing into a file (or stdout, for ``-o -``)."""
    to_stdout = args.output == "-"
    fmt: Format = args.format or ("jsonl" if to_stdout else format_of(args.output))
    if fmt == "table":
        raise UsageError("export writes jsonl or csv")
    resource = _resource(client, args.resource)
    columns = columns_of(resource.model) if fmt == "csv" else []
    listing = resource.list(page_size=args.page_size, **_filters(args.filter))
    # The command owns its loop and nothing else runs on it: plain file I/O is fine here.
    with contextlib.ExitStack() as stack:
        handle = sys.stdout
        if not to_stdout:
            handle = stack.enter_context(
                open(args.output, "w", newline="", encoding="utf-8")  # noqa: ASYNC230
            )
        writer = RecordWriter(handle, fmt, columns)
        try:
            async for record in listing:
                writer.write(as_row(record))
        finally:  # what arrived is written, as JSON lines are, even if the listing fails
            writer.close()
    where = "stdout" if to_stdout else args.output
    print(f"{writer.written} {args.resource} written to {where}", file=sys.stderr)
    return OK


async def cmd_get(client: Client, args: argparse.Namespace) -> int:
    """Print one record."""
    _print_json(as_row(await _resource(client, args.resource).get(args.id)))
    return OK


async def cmd_create(client: Client, args: argparse.Namespace) -> int:
    """Create one record; print it."""
    record = await _resource(client, args.resource).create(_json_argument(args.json))
    _print_json(as_row(record))
    return OK


async def cmd_update(client: Client, args: argparse.Namespace) -> int:
    """Update one record; print it."""
    record = await _resource(client, args.resource).update(args.id, _json_argument(args.json))
    _print_json(as_row(record))
    return OK


async def cmd_delete(client: Client, args: argparse.Namespace) -> int:
    """Delete one record."""
    await _resource(client, args.resource).delete(args.id)
    print(f"deleted {args.resource} {args.id}", file=sys.stderr)
    return OK


async def cmd_users(client: Client, args: argparse.Namespace) -> int:
    """List the users (their secrets masked, as in every command's output)."""
    fmt = _stdout_format(args)
    writer = RecordWriter(sys.stdout, fmt, columns_of(client.users.model) if fmt == "csv" else ())
    async for user in client.users.list():
        writer.write(as_row(user))
    writer.close()
    _say_if_empty(writer, fmt, "users", ())
    return OK


async def cmd_reports(client: Client, args: argparse.Namespace) -> int:
    """Print a financial report."""
    _print_json(as_row(await client.reports.financial(year=args.year, month=args.month)))
    return OK


async def cmd_ratelimit(client: Client, args: argparse.Namespace) -> int:
    """Ask once (one request) and show the budget the server announces.

    The window's length is the server's once two Resets have told it, else an estimate
    from the one Reset seen (so marked), else not known.
    """
    try:  # never waits: a spent budget is what this command is asked to show
        await client.with_options(max_wait=0).customers.list(limit=1, page_size=1).collect()
    except RateLimitError:
        pass  # refused here or by the server (a 429): the figures below say why
    status = client.rate_limit
    reset = status.reset_at.isoformat() if status.reset_at else "not announced"
    print(f"limit      {status.limit} requests per window")
    print(f"remaining  {status.remaining}")
    print(f"reset      {reset}")
    announced = status.reset_at is not None
    window = _window_line(status.window_seconds, status.window_confirmed, announced)
    print(f"window     {window}")
    return OK


def _window_line(seconds: float, confirmed: bool, announced: bool) -> str:
    """The window's length as ``cloudonex ratelimit`` shows it: known, estimated or not.

    ``announced``: some answer has named a Reset (else nothing is known of the window).
    """
    if confirmed:
        return _seconds(seconds)
    if not announced:  # ``seconds`` is the configured rate_period, which the client keeps to
        return f"not known: no answer announced a Reset (the client assumes {_seconds(seconds)})"
    return f"about {_seconds(seconds)} (estimated from one Reset; confirmed after the next)"


def _seconds(seconds: float) -> str:
    """``60 s``, ``3600 s``, ``1.5 s``: whole seconds from ten on."""
    return f"{round(seconds)} s" if seconds >= 10 else f"{seconds:.2g} s"


def _failures_path(args: argparse.Namespace) -> Path:
    if args.failures:
        return Path(args.failures)
    source = Path(args.file)
    return source.with_name(f"{source.stem}.failed{source.suffix or '.jsonl'}")


def _journal_path(args: argparse.Namespace) -> str | None:
    if args.no_journal:
        return None
    return args.journal or f"{args.file}.journal"


def _error_text(outcome: Outcome[Model] | SyncOutcome[Model], lines: Mapping[int, int]) -> str:
    """Why a record failed, on one line; the records whose key it shares, by their line."""
    others = outcome.same_key if isinstance(outcome, SyncOutcome) else ()
    if others:
        many = "s" if len(others) > 1 else ""
        shown = ", ".join(str(lines.get(n, "?")) for n in others)
        return (
            f"the key {outcome.key!r} is also the key of the record{many} on line{many} "
            f"{shown}; this record was not synced"
        )
    return " ".join(str(outcome.error or outcome.status).split())


def _report(result: BulkResult[Model] | SyncResult[Model], args: argparse.Namespace) -> int:
    """Print the summary; write the failed records to a file. Returns the exit code.

    Records are named by the line of the file where they start (1-based; a CSV's
    header is line 1), as the failures file's ``_line`` column does. The file is
    written before anything is printed: a closed stderr must not cost it.
    """
    troubled = sorted([*result.failed, *result.unknown], key=lambda o: o.index)
    if not troubled:
        print(result.summary(), file=sys.stderr)
        return OK
    named = {n for o in troubled if isinstance(o, SyncOutcome) for n in o.same_key}
    lines = line_numbers(args.file, {o.index for o in troubled} | named)
    errors = {o.index: _error_text(o, lines) for o in troubled}
    target = _failures_path(args)
    written = write_failures(args.file, target, errors)
    print(result.summary(), file=sys.stderr)
    shown = troubled[:5]
    for outcome in shown:
        where = f"{args.file}, line {lines.get(outcome.index, '?')}"
        print(f"  {where} ({outcome.status}): {errors[outcome.index]}", file=sys.stderr)
    if len(troubled) > len(shown):
        print(f"  ... and {len(troubled) - len(shown)} more", file=sys.stderr)
    print(
        f"{written} failed record{'s were' if written != 1 else ' was'} written to {target} "
        f"with {'their errors' if written != 1 else 'its error'}: fix "
        f"{'them' if written != 1 else 'it'} there and run `{_again(args, target)}`"
        # A rerun of the fixed file skips what was done only with a journal (or a sync).
        + ("" if getattr(args, "no_journal", False) else f", or fix {args.file} and rerun"),
        file=sys.stderr,
    )
    return PARTIAL


def _again(args: argparse.Namespace, target: Path) -> str:
    """The command that sends the fixed failures file."""
    command = f"cloudonex {args.command} {args.resource} {target}"
    return f"{command} --key {args.key}" if args.key else command


def _reconcile(
    resource: Resource[Model], field: str | None
) -> Callable[[Mapping[str, object]], Awaitable[Model | None]] | None:
    """A lookup by ``field`` for records whose create went unanswered (None: no key)."""
    if field is None:
        return None

    async def look_up(record: Mapping[str, object]) -> Model | None:
        value = record.get(field)
        if value is None:
            return None
        query: dict[str, Any] = {field: value}
        found = await resource.list(priority="bulk", **query).collect()
        wanted = str(value).strip().casefold()
        same = [m for m in found if str(as_row(m).get(field, "")).strip().casefold() == wanted]
        return same[0] if len(same) == 1 else None

    return look_up


async def cmd_import(client: Client, args: argparse.Namespace) -> int:
    """Create every record of a file: a bulk job with progress, a journal and a report."""
    resource = _resource(client, args.resource)
    total = count_records(args.file)
    journal = _journal_path(args)
    args.resume_hint = journal
    with ProgressBar(f"import {args.resource}", total) as bar:
        result = await resource.bulk_create(
            read_records(args.file),
            key=(lambda r: r.get(args.key)) if args.key else None,
            concurrency=args.concurrency,
            batch_size=args.batch_size or None,
            journal=journal,
            reconcile=_reconcile(resource, args.key),
            retry_failed=args.retry_failed,
            on_progress=bar,
            total=total,
        )
    return _report(result, args)


async def cmd_sync(client: Client, args: argparse.Namespace) -> int:
    """Make a resource match a file: show the plan, then (unless --dry-run) carry it out.

    The server is read once: the run carries out the plan it showed.
    """
    if args.delete_missing and args.max_deletes is None:
        raise UsageError("--delete-missing needs --max-deletes N (the most this run may delete)")
    resource = _resource(client, args.resource)
    records = list(read_records(args.file))
    options: dict[str, Any] = {
        "key": args.key,
        "delete_missing": args.delete_missing,
        "max_deletes": args.max_deletes,
        "concurrency": args.concurrency,
    }

    def show(plan: SyncPlan) -> None:
        print(f"plan: {plan.summary()}", file=sys.stderr)

    if args.dry_run:
        show(await resource.sync(records, dry_run=True, **options))
        return OK
    args.resume_hint = args.journal
    with ProgressBar(f"sync {args.resource}", len(records)) as bar:
        result = await resource.sync(
            records, journal=args.journal, on_progress=bar, on_plan=show, **options
        )
    skipped = sum(1 for d in result.deletions if d.status == "skipped")
    if skipped:
        print(f"{skipped} deletions skipped: --max-deletes was reached", file=sys.stderr)
    return _report(result, args)


COMMANDS: dict[str, Callable[[Client, argparse.Namespace], Coroutine[Any, Any, int]]] = {
    "list": cmd_list,
    "export": cmd_export,
    "get": cmd_get,
    "create": cmd_create,
    "update": cmd_update,
    "delete": cmd_delete,
    "users": cmd_users,
    "reports": cmd_reports,
    "ratelimit": cmd_ratelimit,
    "doctor": cmd_doctor,
    "import": cmd_import,
    "sync": cmd_sync,
}


# -- the parser ----------------------------------------------------------------------------


def _add_common(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The connection options, before or after the command.

    After the command they default to "not given" so they never hide the same option
    given before it.
    """

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    group = parser.add_argument_group("connection (else env CLOUDONEX_*, else the config file)")
    group.add_argument("--base-url", default=default(None), help="the site root (https://...)")
    group.add_argument(
        "--api-key", default=default(None), help="prefer CLOUDONEX_API_KEY: flags show in ps"
    )
    group.add_argument(
        "--profile",
        choices=("documented", "shipped", "auto"),
        default=default(None),
        help="the API the server speaks: the vendor page's (default), the deployed 4.x "
        "code's, or auto (ask the server once)",
    )
    group.add_argument(
        "--auth",
        choices=("bearer", "query"),
        default=default(None),
        help="send the key in an Authorization header (default) or as ?api_key= (for "
        "hosts that strip the header)",
    )
    group.add_argument(
        "--body-encoding",
        choices=("json", "form"),
        default=default(None),
        help="how writes send fields: JSON or PHP-style form fields (default: the profile's)",
    )
    group.add_argument(
        "--route-style",
        choices=("path", "ng"),
        default=default(None),
        help="/api/v2/... or /?ng=api/v2/... for hosts without URL rewriting "
        "(default: the profile's)",
    )
    group.add_argument(
        "--item-paths",
        choices=("plural", "singular"),
        default=default(None),
        help="customers/7 or customer/7 (default: the profile's)",
    )
    group.add_argument("--config", default=default(None), help="an INI file, [cloudonex] section")
    group.add_argument(
        "--timeout", type=float, default=default(30.0), help="seconds per request (30)"
    )
    group.add_argument(
        "--max-wait",
        type=float,
        default=default(None),
        help="seconds a call may wait for the budget before failing (exit 6)",
    )
    group.add_argument(
        "--rate-limit",
        metavar="N",
        default=default(None),
        help="requests per window until the server announces its own (1000)",
    )
    group.add_argument(
        "--rate-period",
        metavar="SECONDS",
        default=default(None),
        help="the window until the server announces its own (3600)",
    )
    group.add_argument(
        "--max-response-bytes",
        metavar="N",
        default=default(None),
        help="the largest answer read (16 MiB); raise it for huge listings",
    )
    group.add_argument(
        "--insecure-http",
        action="store_true",
        default=default(False),
        help="allow plain http:// to a remote host",
    )
    parser.add_argument(
        "--debug", action="store_true", default=default(False), help="show tracebacks"
    )


FILTER_HELP = "only records whose field KEY is VALUE; repeat for more fields"
LIST_FORMAT_HELP = (
    "jsonl (default on a pipe), csv, or table (default on a terminal). A csv is written "
    "once the listing ends, its header naming every field any record has (just the "
    "header when there are none); an empty table says so on stderr"
)
PAGE_SIZE_HELP = "records per request (100)"


def build_parser() -> argparse.ArgumentParser:
    """The ``cloudonex`` argument parser."""
    parser = _Parser(
        prog="cloudonex",
        description="Work with a CloudOnex Business Suite (API v2) from the shell.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(parser, suppress=False)
    common = _Parser(add_help=False)
    _add_common(common, suppress=True)
    commands = parser.add_subparsers(
        dest="command",
        required=True,
        metavar="COMMAND",
        help="see `cloudonex COMMAND --help` for each",
    )

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, description=help, parents=[common])

    def resource(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "resource", choices=RESOURCES, metavar="RESOURCE", help=", ".join(RESOURCES)
        )

    def record_id(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("id", metavar="ID", help="the record's id")

    sub = command("list", "print a listing as it streams in")
    resource(sub)
    sub.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE", help=FILTER_HELP)
    sub.add_argument("--format", choices=("jsonl", "csv", "table"), help=LIST_FORMAT_HELP)
    sub.add_argument(
        "--limit", type=int, metavar="N", help="print at most N records (default: all)"
    )
    sub.add_argument("--page-size", type=int, default=100, metavar="N", help=PAGE_SIZE_HELP)
    sub = command("export", "write a listing to a JSON-lines or CSV file as it streams in")
    resource(sub)
    sub.add_argument(
        "--output", "-o", required=True, metavar="FILE", help="the file to write, or - for stdout"
    )
    sub.add_argument(
        "--format",
        choices=("jsonl", "csv"),
        help="default: from the file's name (.csv is csv), else jsonl. A csv's header "
        "names every field any record has (just the header when there are none)",
    )
    sub.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE", help=FILTER_HELP)
    sub.add_argument("--page-size", type=int, default=100, metavar="N", help=PAGE_SIZE_HELP)
    sub = command("get", "print one record")
    resource(sub)
    record_id(sub)
    sub = command("create", "create a record from --json")
    resource(sub)
    sub.add_argument("--json", required=True, help="a JSON object, @FILE, or - for stdin")
    sub = command("update", "change fields of a record from --json")
    resource(sub)
    record_id(sub)
    sub.add_argument("--json", required=True, help="a JSON object, @FILE, or - for stdin")
    sub = command("delete", "delete a record")
    resource(sub)
    record_id(sub)
    sub = command("users", "list the users")
    sub.add_argument("--format", choices=("jsonl", "csv", "table"), help=LIST_FORMAT_HELP)
    sub = command("reports", "print a report")
    sub.add_argument("report", choices=("financial",), help="the report: financial")
    sub.add_argument("--year", type=int, required=True, metavar="YYYY", help="the year, e.g. 2024")
    sub.add_argument("--month", type=int, required=True, metavar="M", help="the month, 1 to 12")
    command("ratelimit", "show the budget of the configured key (one request)")
    sub = command(
        "doctor",
        "check what the configured server really does and what to set (at most 15 reads)",
    )
    sub.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="a table for people (default) or JSON for programs",
    )
    for name, text in (
        ("import", "create every record of a CSV or JSON-lines file, resumably"),
        ("sync", "make a resource match a CSV or JSON-lines file"),
    ):
        sub = command(name, text)
        resource(sub)
        sub.add_argument(
            "file",
            metavar="FILE",
            help="a .csv file (a header line, then a record per row) or JSON lines",
        )
        sub.add_argument(
            "--concurrency", type=int, default=8, metavar="N", help="requests in flight at once (8)"
        )
        sub.add_argument(
            "--failures",
            metavar="FILE",
            help="where failed records go, with their line and error (default: FILE.failed.EXT)",
        )
        if name == "import":
            sub.add_argument(
                "--journal", metavar="FILE", help="default: FILE.journal (rerun to resume)"
            )
            sub.add_argument(
                "--no-journal", action="store_true", help="keep no journal (a rerun starts over)"
            )
            sub.add_argument(
                "--retry-failed",
                action="store_true",
                help="send again the records the journal says failed (default: report them)",
            )
            sub.add_argument("--key", help="a field that identifies a record, e.g. email")
            sub.add_argument(
                "--batch-size",
                type=int,
                default=100,
                metavar="N",
                help="records per request where the server takes batches (100); 0: one each",
            )
        else:
            sub.add_argument("--key", required=True, help="the field that identifies a record")
            sub.add_argument(
                "--journal", metavar="FILE", help="a journal file, to resume after a crash"
            )
            sub.add_argument("--dry-run", action="store_true", help="show the plan only")
            sub.add_argument(
                "--delete-missing",
                action="store_true",
                help="delete the records whose key is not in FILE (needs --max-deletes)",
            )
            sub.add_argument(
                "--max-deletes", type=int, metavar="N", help="the most records this run may delete"
            )
    sandbox = commands.add_parser(
        "sandbox", help="run the embedded sandbox server", description="Run a CloudOnex sandbox."
    )
    from ..testing.__main__ import add_arguments

    add_arguments(sandbox)
    command("demo", "run the demo job against an embedded sandbox")
    return parser


# -- running -----------------------------------------------------------------------------


def _exit_code(error: BaseException) -> int:
    if isinstance(error, (UsageError, ConfigurationError, ValueError, OSError)):
        return USAGE  # a bad flag or file, a missing URL or key (TransportError is no OSError)
    if isinstance(error, (AuthenticationError, PermissionDeniedError)):
        return AUTH
    if isinstance(error, NotFoundError):
        return NOT_FOUND
    if isinstance(error, UnsupportedError):
        return UNSUPPORTED
    if isinstance(error, RateLimitError):
        return RATE_LIMITED
    if isinstance(error, TransportError):
        return UNREACHABLE
    return API


def _fail(message: str, code: int) -> NoReturn:
    print(f"cloudonex: error: {as_flags(' '.join(message.split()))}", file=sys.stderr)
    raise SystemExit(code)


async def _run(args: argparse.Namespace) -> int:
    # Ctrl-C cancels the command's task, so a job stops gracefully (requests in flight
    # finish and are journaled) on every Python; by default 3.10 raises
    # KeyboardInterrupt wherever the loop happens to be.
    task = asyncio.current_task()
    if task is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, task.cancel)
    if args.command == "demo":  # it starts a sandbox and a client of its own
        from ..demo import run

        await run()
        return OK
    try:
        client = make_client(args)
    except (ConfigurationError, UsageError) as error:
        if args.command == "doctor":  # a finding like any other (JSON stays JSON)
            return cannot_start(error, args)
        raise
    async with client:
        return await COMMANDS[args.command](client, args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``cloudonex`` command line; return its exit code.

    A reader that stops reading (``cloudonex list customers | head -1``) ends the
    command quietly, with 0: it had what it wanted. A command that ran to its end keeps
    its exit status, whether or not its last output could be written.
    """
    # (Either may be None when the shell closed it: `cloudonex doctor >&-`.)
    stderr, sys.stderr = sys.stderr, cast(TextIO, _Unbroken(sys.stderr or open(os.devnull, "w")))
    try:
        code = _main(argv)
    except BrokenPipeError:  # stdout's: stderr's never raises (see _Unbroken)
        _drop_stdout()
        return OK
    except SystemExit:
        _flush_stdout()  # e.g. --help into a closed pipe: no complaint at exit
        raise
    finally:
        sys.stderr = stderr
    _flush_stdout()
    return code


class _Unbroken:
    """A stream (stderr) whose writes are dropped once its reader has gone.

    A report nobody reads must not stop the command: it goes on, writes its files and
    keeps its exit status.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._gone = False

    def write(self, text: str) -> int:
        if not self._gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._gone = True
        return len(text)

    def flush(self) -> None:
        if not self._gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._gone = True

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


def _flush_stdout() -> bool:
    """Flush stdout now (not at exit); False if its reader has gone."""
    if sys.stdout is None:  # closed by the shell: print() writes nothing
        return True
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _drop_stdout()
        return False
    return True


def _drop_stdout() -> None:
    """Point stdout at the null device: its reader has gone, and Python flushes it at exit.

    (The Python docs' "Note on SIGPIPE", in the signal module.)
    """
    with contextlib.suppress(OSError, ValueError):  # no file descriptor (a test's stdout)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "sandbox":
        from ..testing.__main__ import serve

        serve(args)
        return OK
    args.resume_hint = None
    try:
        return asyncio.run(_run(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        hint = args.resume_hint
        again = "run the same command again to resume" + (f" (journal: {hint})" if hint else "")
        print(
            f"\ncloudonex: interrupted: requests in flight were finished; {again}",
            file=sys.stderr,
        )
        return INTERRUPTED
    except BrokenPipeError:
        raise  # stdout's reader has gone: main() ends quietly
    except (CloudOnexError, UsageError, ValueError, OSError) as error:
        if args.debug:
            traceback.print_exc()
        _fail(_with_line(error, args), _exit_code(error))


def _with_line(error: BaseException, args: argparse.Namespace) -> str:
    """The error's message; for a file that changed since its journal, by its line."""
    if not isinstance(error, InputChangedError):
        return str(error)
    try:
        line = line_numbers(args.file, [error.index]).get(error.index, "?")
    except (OSError, ValueError):  # the file itself is the trouble
        return str(error)
    return (
        f"{args.file}, line {line} has changed since an earlier run sent it, so importing it "
        "again could create it twice: restore the line to resume, or change records that "
        f"exist with `cloudonex sync {args.resource} {args.file} --key FIELD`; a file of "
        "other records needs a new --journal"
    )
