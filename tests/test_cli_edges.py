"""The ``cloudonex`` command line's rough edges: closed pipes, progress without rich,
help texts, records named by their line, empty listings and CSV headers.

Most tests run ``cli.main(argv)`` in a worker thread (the sandbox serves on the test's
loop); those about a closed pipe run the command in a subprocess.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import shlex
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import attrs
import pytest

from cloudonex_async import BulkProgress
from cloudonex_async.cli import build_parser, main
from cloudonex_async.cli._progress import ProgressBar
from cloudonex_async.testing import SandboxServer

from .conftest import SandboxFactory
from .test_cli import environment


@attrs.frozen
class Ran:
    code: int
    out: str
    err: str


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


Cli = Callable[..., Awaitable[Ran]]


@pytest.fixture
def cli(
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> Cli:
    """``await cli(*argv)``: ``cloudonex ARGV`` against the sandbox, in ``tmp_path``.

    It runs in this process, in a thread (the sandbox serves on the test's loop), with
    no other CLOUDONEX_* variables and no user config file.
    """
    for name in list(os.environ):
        if name.startswith("CLOUDONEX_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CLOUDONEX_BASE_URL", sandbox.base_url)
    monkeypatch.setenv("CLOUDONEX_API_KEY", sandbox.api_key)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)

    async def run(*argv: str) -> Ran:
        capsys.readouterr()
        try:
            code = await asyncio.to_thread(main, argv)
        except SystemExit as stop:
            code = int(stop.code or 0)
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    return run


@pytest.fixture
def without_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import rich`` fail, as where the ``cli`` extra is not installed."""
    for name in ("rich", "rich.console", "rich.progress"):
        monkeypatch.setitem(sys.modules, name, None)


# -- 1. a reader that stops reading -----------------------------------------------------


def read_then_close(fd: int, lines: int) -> list[bytes]:
    """Read ``lines`` lines from a pipe, then close it (as ``head`` does)."""
    with open(fd, "rb") as pipe:
        return [pipe.readline() for _ in range(lines)]


async def run_into_pipe(
    sandbox: SandboxServer, tmp_path: Path, *argv: str, lines: int
) -> tuple[int, list[bytes], str]:
    """Run ``cloudonex ARGV`` into a pipe whose reader reads ``lines`` lines, then closes."""
    read_end, write_end = os.pipe()
    if not lines:
        os.close(read_end)  # the reader has gone before the command writes anything
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "cloudonex_async", *argv),
        cwd=tmp_path,
        env=environment(sandbox),
        stdout=write_end,
        stderr=asyncio.subprocess.PIPE,
    )
    os.close(write_end)
    got = await asyncio.to_thread(read_then_close, read_end, lines) if lines else []
    _, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, got, err.decode()


@pytest.mark.slow
async def test_a_listing_whose_reader_stops_after_one_line_ends_quietly_with_0(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    # Far more than a pipe holds (64 KiB), so the command is still writing when it closes.
    sandbox.seed(
        "customers",
        [{"account": f"Customer {n}", "email": f"c{n}@example.com"} for n in range(3000)],
    )
    code, [line], err = await run_into_pipe(sandbox, tmp_path, "list", "customers", lines=1)
    assert json.loads(line)["email"] == "c0@example.com"
    assert err == ""  # no "Broken pipe" error, no traceback, no "Exception ignored"
    assert code == 0


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv",
    [
        ("get", "customers", "1"),
        ("users", "--format", "csv"),
        ("export", "customers", "-o", "-"),
        ("list", "customers", "--format", "table"),
    ],
    ids=["get", "users", "export", "table"],
)
async def test_a_command_whose_reader_has_gone_ends_quietly_with_0(
    sandbox: SandboxServer, tmp_path: Path, argv: tuple[str, ...]
) -> None:
    sandbox.seed("customers", [{"account": "Only", "email": "only@example.com"}])
    sandbox.seed("users", [{"username": "ann", "fullname": "Ann", "email": "ann@example.com"}])
    code, _, err = await run_into_pipe(sandbox, tmp_path, *argv, lines=0)
    assert err == ""  # no "Broken pipe" error, no traceback, no "Exception ignored"
    assert code == 0


# -- 2. progress without rich ------------------------------------------------------------


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def progress(done: int) -> BulkProgress:
    return BulkProgress(
        done=done,
        total=10,
        succeeded=done,
        failed=0,
        unknown=0,
        eta_seconds=10.0 - done,
        budget_remaining=900 - done,
    )


@pytest.mark.usefixtures("without_rich")
def test_without_rich_a_terminal_gets_one_hint_then_a_line_at_most_every_two_seconds() -> None:
    clock, terminal = Clock(), Terminal()
    with ProgressBar("import customers", 10, stream=terminal, clock=clock) as bar:
        [hint] = terminal.getvalue().splitlines()
        assert 'pip install "cloudonex-async[cli]"' in hint
        for done, seconds in enumerate([0.5, 1.9, 2.0, 2.1, 3.9, 4.0, 4.1, 9.0, 9.5, 10.9]):
            clock.now = 1000.0 + seconds
            bar(progress(done + 1))
    hint_again, *lines = terminal.getvalue().splitlines()
    assert hint_again == hint  # once
    # At 2.0 s (2 s after the start), 4.0 s, 9.0 s: each 2 s or more after the last.
    assert lines == [
        "import customers: 3/10 (30%)  ok 3  failed 0  unknown 0  budget 897  ETA 7s",
        "import customers: 6/10 (60%)  ok 6  failed 0  unknown 0  budget 894  ETA 4s",
        "import customers: 8/10 (80%)  ok 8  failed 0  unknown 0  budget 892  ETA 2s",
    ]


@pytest.mark.usefixtures("without_rich")
def test_without_rich_a_pipe_gets_no_progress_at_all() -> None:
    clock, pipe = Clock(), io.StringIO()
    with ProgressBar("import customers", 10, stream=pipe, clock=clock) as bar:
        for done in range(10):
            clock.now += 5
            bar(progress(done + 1))
    assert pipe.getvalue() == ""


@pytest.mark.usefixtures("without_rich")
async def test_an_import_without_rich_hints_on_a_terminal_and_says_nothing_on_a_pipe(
    sandbox: SandboxServer,
    tmp_path: Path,
    cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("piped", "shown"):
        rows = [{"account": f"P {n}", "email": f"{name}{n}@example.com"} for n in range(5)]
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    piped = await cli("import", "customers", "piped.jsonl")
    assert piped.code == 0, piped.err
    assert piped.err.splitlines() == ["5 records: 5 succeeded, 0 failed, 0 unknown"]
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    shown = await cli("import", "customers", "shown.jsonl")
    assert shown.code == 0, terminal.getvalue()
    hint, *rest = terminal.getvalue().splitlines()
    assert hint == (
        "import customers of 5 records: progress every 2 s "
        '(pip install "cloudonex-async[cli]" for a progress bar)'
    )
    assert rest[-1] == "5 records: 5 succeeded, 0 failed, 0 unknown"
    assert "cloudonex-async[cli]" not in "".join(rest)


# -- 3. help texts -----------------------------------------------------------------------


def parsers(
    parser: argparse.ArgumentParser, name: str
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from parsers(sub, f"{name} {sub_name}")


def test_every_option_and_argument_of_every_command_has_help() -> None:
    missing = [
        f"{name}: {'/'.join(action.option_strings) or action.dest}"
        for name, parser in parsers(build_parser(), "cloudonex")
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction)
        if not (action.help or "").strip() or action.help == argparse.SUPPRESS
    ]
    assert missing == []


# -- 4. records named by the line where they start --------------------------------------


async def test_a_csv_import_names_failed_records_by_their_line_in_the_file(
    sandbox: SandboxServer, tmp_path: Path, cli: Cli
) -> None:
    (tmp_path / "people.csv").write_text(
        "account,email,address,created_at\n"  # line 1
        'Alpha,alpha@example.com,"1 Main Street\n'  # line 2
        'Floor 2",\n'  # line 3
        "Beta,not-an-email,,\n"  # line 4: the server refuses it
        "\n"  # line 5: blank
        'Gamma,gamma@example.com,"2 Side Street\n'  # line 6: refused before sending
        'Back door",not a date\n'  # line 7
        "Delta,delta@example.com,,\n"  # line 8
    )
    ran = await cli("import", "customers", "people.csv", "--no-journal")
    assert ran.code == 1
    assert "4 records: 2 succeeded, 2 failed" in ran.err
    beta, gamma = [line for line in ran.err.splitlines() if line.startswith("  ")]
    assert beta.startswith("  people.csv, line 4 (failed): ")
    assert "Invalid email format" in beta
    assert gamma.startswith("  people.csv, line 6 (failed): this record holds a value ")
    assert "record 2" not in ran.err  # the 0-based position the library knows it by
    failures = list(csv.DictReader(io.StringIO((tmp_path / "people.failed.csv").read_text())))
    assert [(f["account"], f["_line"]) for f in failures] == [("Beta", "4"), ("Gamma", "6")]
    assert failures[1]["_error"].startswith("this record holds a value that cannot be sent")
    assert failures[1]["address"] == "2 Side Street\nBack door"


async def test_a_jsonl_sync_names_records_and_the_records_they_clash_with_by_line(
    sandbox: SandboxServer, tmp_path: Path, cli: Cli
) -> None:
    rows = [
        {"account": "Alpha", "email": "alpha@example.com"},  # line 2 (line 1 is blank)
        {"account": "Twin 1", "email": "twin@example.com"},  # line 3
        {"account": "Beta", "email": "beta@example.com"},  # line 4
        {"account": "Twin 2", "email": "twin@example.com"},  # line 5
    ]
    (tmp_path / "want.jsonl").write_text("\n" + "".join(json.dumps(r) + "\n" for r in rows))
    ran = await cli("sync", "customers", "want.jsonl", "--key", "email")
    assert ran.code == 1
    first, second = [line for line in ran.err.splitlines() if line.startswith("  ")]
    assert first == (
        "  want.jsonl, line 3 (failed): the key 'twin@example.com' is also the key of the "
        "record on line 5; this record was not synced"
    )
    assert second == (
        "  want.jsonl, line 5 (failed): the key 'twin@example.com' is also the key of the "
        "record on line 3; this record was not synced"
    )
    failures = [
        json.loads(line) for line in (tmp_path / "want.failed.jsonl").read_text().splitlines()
    ]
    assert [(f["account"], f["_line"]) for f in failures] == [("Twin 1", 3), ("Twin 2", 5)]


async def test_an_import_whose_file_changed_since_its_journal_names_the_line(
    sandbox: SandboxServer, tmp_path: Path, cli: Cli
) -> None:
    people = tmp_path / "people.csv"
    people.write_text("account,email\nA,a@example.com\nB,b@example.com\nC,c@example.com\n")
    first = await cli("import", "customers", "people.csv")
    assert first.code == 0, first.err
    people.write_text("account,email\nA,a@example.com\nB2,b@example.com\nC,c@example.com\n")
    again = await cli("import", "customers", "people.csv")
    assert again.code == 2
    assert again.err.startswith(
        "cloudonex: error: people.csv, line 3 has changed since an earlier run sent it, so "
    )
    assert "cloudonex sync customers people.csv --key FIELD" in again.err
    assert "--no-journal" not in again.err  # that would create A and C a second time
    assert sorted(str(r["account"]) for r in sandbox.records("customers")) == ["A", "B", "C"]


async def test_fixing_a_failed_line_in_the_file_itself_and_rerunning_creates_no_duplicate(
    sandbox: SandboxServer, tmp_path: Path, cli: Cli
) -> None:
    people = tmp_path / "people.csv"
    people.write_text(
        "account,email\nAda,ada@example.com\n,nobody@example.com\nAl,al@example.com\n"
    )
    first = await cli("import", "customers", "people.csv", "--key", "email")
    assert first.code == 1
    assert "people.csv, line 3 (failed)" in first.err
    # What most people do: fix the line where it is, and run the same command again.
    people.write_text(
        "account,email\nAda,ada@example.com\nNobody,nobody@example.com\nAl,al@example.com\n"
    )
    again = await cli("import", "customers", "people.csv", "--key", "email")
    assert again.code == 0, again.err
    assert sorted(str(r["account"]) for r in sandbox.records("customers")) == [
        "Ada", "Al", "Nobody",
    ]  # fmt: skip


# -- 5. an empty listing -----------------------------------------------------------------


async def test_an_empty_table_says_so_on_stderr_and_jsonl_and_csv_stay_clean(
    sandbox: SandboxServer, cli: Cli
) -> None:
    table = await cli("list", "customers", "--format", "table")
    assert (table.code, table.out, table.err) == (0, "", "no customers\n")
    users = await cli("users", "--format", "table")
    assert (users.code, users.out, users.err) == (0, "", "no users\n")
    sandbox.seed("customers", [{"account": "A", "email": "a@example.com"}])
    filtered = await cli("list", "customers", "--format", "table", "--filter", "email=b@x.org")
    assert (filtered.code, filtered.out) == (0, "")
    assert filtered.err == "no customers matching email=b@x.org\n"
    jsonl = await cli("list", "customers", "--filter", "email=b@x.org")
    assert (jsonl.code, jsonl.out, jsonl.err) == (0, "", "")
    as_csv = await cli("users", "--format", "csv")
    assert as_csv.code == 0
    assert as_csv.err == ""
    [header] = as_csv.out.splitlines()  # the header alone
    assert header.startswith("id,username,")


# -- 6. a CSV names every field of every record ------------------------------------------


async def test_a_csv_has_a_column_for_every_field_any_record_has(
    sandbox: SandboxServer, tmp_path: Path, cli: Cli
) -> None:
    records: list[dict[str, object]] = [
        {"account": f"P {n}", "email": f"p{n}@example.com"} for n in range(7)
    ]
    records[3]["phone"] = "+49 30 1234"  # a declared field the first record does not have
    records[4]["loyalty"] = "gold"  # fields the model does not declare, on later pages
    records[6]["region"] = "north"
    sandbox.seed("customers", records)
    exported = await cli("export", "customers", "-o", "all.csv", "--page-size", "2")
    assert exported.code == 0, exported.err
    assert exported.err == "7 customers written to all.csv\n"
    listed = await cli("list", "customers", "--format", "csv", "--page-size", "3")
    assert listed.code == 0, listed.err
    for text in ((tmp_path / "all.csv").read_text(), listed.out):
        rows = list(csv.DictReader(text.splitlines()))
        assert len(rows) == 7
        assert list(rows[0])[:3] == ["id", "account", "email"]
        assert list(rows[0])[-2:] == ["loyalty", "region"]
        assert [r["phone"] for r in rows] == ["", "", "", "+49 30 1234", "", "", ""]
        assert [r["loyalty"] for r in rows] == ["", "", "", "", "gold", "", ""]
        assert rows[6]["region"] == "north"


async def test_the_failures_file_keeps_the_empty_column_to_fill_in(
    sandbox: SandboxServer, tmp_path: Path, cli: Cli
) -> None:
    (tmp_path / "some.csv").write_text(
        "account,email,phone\nAda,ada@example.com,1\n,nobody@example.com,2\n"
    )
    ran = await cli("import", "customers", "some.csv", "--key", "email")
    assert ran.code == 1
    assert "1 failed record was written to some.failed.csv with its error" in ran.err
    failed = (tmp_path / "some.failed.csv").read_text().splitlines()
    assert failed[0] == "account,email,phone,_line,_error"
    assert failed[1].startswith(",nobody@example.com,2,3,")
    # Filled in there, it imports, and nothing is created twice.
    (tmp_path / "some.failed.csv").write_text("\n".join([failed[0], "Nobody" + failed[1]]) + "\n")
    again = await cli("import", "customers", "some.failed.csv", "--key", "email")
    assert again.code == 0, again.err
    assert sorted(str(r["account"]) for r in sandbox.records("customers")) == ["Ada", "Nobody"]


# -- advice in the command line's words ---------------------------------------------------


def test_advice_names_flags_not_python_arguments() -> None:
    from cloudonex_async.cli._flags import as_flags

    assert as_flags("pass route_style='ng' (or profile='auto')") == (
        "pass --route-style ng (or --profile auto)"
    )
    assert as_flags("set rate_limit= and rate_period= to it") == (
        "set --rate-limit and --rate-period to it"
    )
    assert as_flags("set rate_limit=1000, or else") == "set --rate-limit 1000, or else"
    untouched = "Client(timeout=...) or with_options(timeout=...); the key is 'k=v'"
    assert as_flags(untouched) == untouched


async def test_an_error_tells_a_command_line_user_which_flag_to_set(
    make_sandbox: SandboxFactory,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shipped = await make_sandbox(style="shipped")
    for name in list(os.environ):
        if name.startswith("CLOUDONEX_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    site = ["--base-url", shipped.base_url, "--api-key", shipped.api_key]

    async def run(*argv: str) -> int:
        try:
            return await asyncio.to_thread(main, [*site, *argv])
        except SystemExit as stop:
            return int(stop.code or 0)

    assert await run("list", "customers") == 2
    err = capsys.readouterr().err
    assert "--route-style ng" in err
    assert "route_style=" not in err
    # The budget flags exist and reach the Client: shipped code announces no budget.
    assert await run("--profile", "shipped", "--rate-limit", "7", "ratelimit") == 0
    assert "limit      7 requests per window" in capsys.readouterr().out
    assert await run("--rate-limit", "lots", "ratelimit") == 2
    assert "must be a number, not 'lots'" in capsys.readouterr().err


@pytest.mark.slow
async def test_a_verdict_survives_a_closed_pipe(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    stripped = await make_sandbox(strip_authorization=True)  # doctor must say 2 here
    for lines in (0, 1):
        code, _, err = await run_into_pipe(stripped, tmp_path, "doctor", lines=lines)
        assert code == 2, err  # `set -o pipefail` still sees the problem
        assert "Broken pipe" not in err


@pytest.mark.slow
async def test_the_failures_file_is_written_even_when_no_one_reads_the_report(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    (tmp_path / "s.csv").write_text("account,email\nAda,ada@example.com\n,nobody@example.com\n")
    read_end, write_end = os.pipe()
    os.close(read_end)  # `2>&1 | true`: stdout and stderr go nowhere
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "cloudonex_async", "import", "customers", "s.csv"),
        cwd=tmp_path,
        env=environment(sandbox),
        stdout=write_end,
        stderr=write_end,
    )
    os.close(write_end)
    await process.wait()
    assert process.returncode == 1  # some records failed: a closed pipe does not hide it
    assert (
        (tmp_path / "s.failed.csv").read_text().splitlines()[1].startswith(",nobody@example.com,3,")
    )


async def test_doctor_reports_a_configuration_no_client_can_have_as_json(
    cli: Cli,
) -> None:
    ran = await cli("--base-url", "ftp://crm.example.com", "doctor", "--format", "json")
    assert ran.code == 2
    report = json.loads(ran.out)
    assert report["ok"] is False
    assert report["requests"] == 0
    [finding] = report["findings"]
    assert finding["check"] == "config"
    assert "base_url must be an http(s) URL" in finding["summary"]
    ran = await cli("--base-url", "http://crm.example.com", "doctor")
    assert ran.code == 2
    shown = " ".join(ran.out.split())  # the table wraps its lines
    assert "pass --insecure-http if you must" in shown
    assert "allow_insecure_http" not in shown


async def test_odd_files_bom_json_lines_and_rows_of_only_separators(
    sandbox: SandboxServer, tmp_path: Path, cli: Cli
) -> None:
    (tmp_path / "bom.jsonl").write_text('\ufeff{"account": "Ada", "email": "ada@example.com"}\n')
    (tmp_path / "tail.csv").write_text("account,email\nAl,al@example.com\n,\n,,\n")
    assert (await cli("import", "customers", "bom.jsonl")).code == 0
    ran = await cli("import", "customers", "tail.csv")
    assert ran.code == 0, ran.err
    assert ran.err.startswith("1 record: 1 succeeded")
    assert sorted(str(r["account"]) for r in sandbox.records("customers")) == ["Ada", "Al"]


async def test_a_csv_listing_that_fails_midway_keeps_what_arrived(
    tmp_path: Path, cli: Cli, sandbox: SandboxServer
) -> None:
    sandbox.seed("customers", [{"account": f"C {n}", "email": f"c{n}@x.test"} for n in range(5)])
    sandbox.paging = "stuck"  # page 2 repeats page 1: the listing stops with an error there
    ran = await cli("export", "customers", "-o", "out.csv", "--page-size", "2")
    assert ran.code != 0
    assert "page 2 repeats page 1" in ran.err
    rows = (tmp_path / "out.csv").read_text().splitlines()
    assert rows[0].startswith("id,account,email")
    assert [row.split(",")[1] for row in rows[1:]] == ["C 0", "C 1"]  # the page that came


@pytest.mark.slow
@pytest.mark.parametrize("closed", [">&-", "2>&-"])
async def test_a_stream_the_shell_closed_changes_nothing(
    sandbox: SandboxServer, tmp_path: Path, closed: str
) -> None:
    (tmp_path / "s.csv").write_text("account,email\nAda,ada@example.com\n,nobody@example.com\n")
    python = shlex.quote(sys.executable)
    for argv, code in (("doctor", 0), ("import customers s.csv", 1)):
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            f"exec {python} -m cloudonex_async {argv} {closed}",
            cwd=tmp_path,
            env=environment(sandbox),
            stderr=asyncio.subprocess.PIPE if closed == ">&-" else None,
            stdout=asyncio.subprocess.PIPE if closed == "2>&-" else None,
        )
        out, err = await process.communicate()
        assert process.returncode == code, (argv, out, err)
        if closed == ">&-":  # the stream still open is the one a traceback would reach
            assert b"Traceback" not in err
        elif argv == "doctor":  # stderr closed: the verdict still comes out whole
            assert out.startswith(b"CHECK")
            assert b"the configuration works as set" in out
    assert (tmp_path / "s.failed.csv").exists()
