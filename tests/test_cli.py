"""The ``cloudonex`` command line, driven in a subprocess against a sandbox."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import attrs
import pytest

from cloudonex_async.testing import FakeClock, SandboxServer

from .conftest import SandboxFactory, wait_until

ROOT = Path(__file__).resolve().parent.parent


@attrs.frozen
class Ran:
    code: int
    out: str
    err: str


def environment(sandbox: SandboxServer | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDONEX_")}
    env["HOME"] = str(ROOT / "tests")  # no user config file is read
    if sandbox is not None:
        env["CLOUDONEX_BASE_URL"] = sandbox.base_url
        env["CLOUDONEX_API_KEY"] = sandbox.api_key
    env.update(extra)
    return env


async def start(*args: str, env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "cloudonex_async", *args),
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def cloudonex(*args: str, sandbox: SandboxServer | None, cwd: Path, **extra: str) -> Ran:
    process = await start(*args, env=environment(sandbox, **extra), cwd=cwd)
    out, err = await process.communicate()
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


def emails(sandbox: SandboxServer) -> Counter[str]:
    return Counter(str(r["email"]) for r in sandbox.records("customers"))


@pytest.mark.slow
async def test_list_in_each_format_get_and_create(sandbox: SandboxServer, tmp_path: Path) -> None:
    sandbox.seed(
        "customers", [{"account": f"P {n}", "email": f"p{n}@example.com"} for n in range(5)]
    )
    jsonl = await cloudonex("list", "customers", "--limit", "3", sandbox=sandbox, cwd=tmp_path)
    assert jsonl.code == 0
    rows = [json.loads(line) for line in jsonl.out.splitlines()]
    assert [r["email"] for r in rows] == ["p0@example.com", "p1@example.com", "p2@example.com"]
    as_csv = await cloudonex(
        "list", "customers", "--format", "csv", "--filter", "email=p4@example.com",
        sandbox=sandbox, cwd=tmp_path,
    )  # fmt: skip
    [row] = list(csv.DictReader(as_csv.out.splitlines()))
    assert row["account"] == "P 4"
    table = await cloudonex("list", "customers", "--format", "table", sandbox=sandbox, cwd=tmp_path)
    lines = table.out.splitlines()
    assert lines[0].split()[:3] == ["id", "account", "email"]
    assert len(lines) == 2 + 5
    got = await cloudonex("get", "customers", str(rows[1]["id"]), sandbox=sandbox, cwd=tmp_path)
    assert json.loads(got.out)["email"] == "p1@example.com"
    made = await cloudonex(
        "create", "customers", "--json", '{"account": "New", "email": "new@example.com"}',
        sandbox=sandbox, cwd=tmp_path,
    )  # fmt: skip
    assert made.code == 0
    assert json.loads(made.out)["id"] == 6
    assert emails(sandbox)["new@example.com"] == 1
    exported = await cloudonex(
        "export", "customers", "--output", "all.csv", sandbox=sandbox, cwd=tmp_path
    )
    assert exported.code == 0
    assert len(list(csv.DictReader((tmp_path / "all.csv").read_text().splitlines()))) == 6


@pytest.mark.slow
async def test_a_csv_import_reports_the_invalid_row_and_creates_the_rest(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    rows = [f"Person {n},person{n}@example.com" for n in range(20)]
    rows[7] = "Person 7,not-an-email"
    (tmp_path / "people.csv").write_text("account,email\n" + "\n".join(rows) + "\n")
    ran = await cloudonex("import", "customers", "people.csv", sandbox=sandbox, cwd=tmp_path)
    assert ran.code == 1  # a partial failure
    assert "20 records: 19 succeeded, 1 failed" in ran.err
    assert "Invalid email format" in ran.err
    [failed] = list(csv.DictReader((tmp_path / "people.failed.csv").read_text().splitlines()))
    assert failed["email"] == "not-an-email"
    assert "Invalid email format" in failed["_error"]
    assert len(sandbox.records("customers")) == 19
    # Fixed, the failures file imports as it is (its _error column is ignored).
    fixed = (tmp_path / "people.failed.csv").read_text().replace("not-an-email", "p7@example.com")
    (tmp_path / "people.failed.csv").write_text(fixed)
    again = await cloudonex(
        "import", "customers", "people.failed.csv", sandbox=sandbox, cwd=tmp_path
    )
    assert again.code == 0
    assert len(sandbox.records("customers")) == 20


@pytest.mark.slow
async def test_an_import_killed_part_way_resumes_from_its_journal_without_duplicates(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = await make_sandbox(latency=0.03)
    lines = [json.dumps({"account": f"P {n}", "email": f"p{n}@example.com"}) for n in range(120)]
    (tmp_path / "people.jsonl").write_text("\n".join(lines) + "\n")
    args = ("import", "customers", "people.jsonl", "--key", "email", "--batch-size", "0")
    first = await start(*args, "--concurrency", "4", env=environment(sandbox), cwd=tmp_path)
    await wait_until(lambda: sandbox.count("create") >= 30, timeout=30)
    first.send_signal(signal.SIGKILL)
    await first.wait()
    assert len(sandbox.records("customers")) < 120  # it really died part-way
    again = await cloudonex(*args, sandbox=sandbox, cwd=tmp_path)
    assert again.code == 0, again.err
    assert "120 records: 120 succeeded" in again.err
    assert emails(sandbox) == Counter(f"p{n}@example.com" for n in range(120))


@pytest.mark.slow
async def test_ctrl_c_stops_an_import_and_says_how_to_resume(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = await make_sandbox(latency=0.03)
    lines = [json.dumps({"account": f"P {n}", "email": f"p{n}@example.com"}) for n in range(100)]
    (tmp_path / "people.jsonl").write_text("\n".join(lines) + "\n")
    args = ("import", "customers", "people.jsonl", "--batch-size", "0")
    first = await start(*args, env=environment(sandbox), cwd=tmp_path)
    await wait_until(lambda: sandbox.count("create") >= 10, timeout=30)
    first.send_signal(signal.SIGINT)
    _, err = await first.communicate()
    assert first.returncode == 130
    assert "run the same command again to resume (journal: people.jsonl.journal)" in err.decode()
    again = await cloudonex(*args, sandbox=sandbox, cwd=tmp_path)
    assert again.code == 0, again.err
    assert emails(sandbox) == Counter(f"p{n}@example.com" for n in range(100))


@pytest.mark.slow
async def test_sync_shows_its_plan_and_runs(sandbox: SandboxServer, tmp_path: Path) -> None:
    sandbox.seed(
        "customers", [{"account": f"P {n}", "email": f"p{n}@example.com"} for n in range(10)]
    )
    rows = [{"account": f"P {n}", "email": f"p{n}@example.com"} for n in range(12)]
    rows[0]["account"] = "Renamed"
    (tmp_path / "want.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ("sync", "customers", "want.jsonl", "--key", "email")
    plan = await cloudonex(*args, "--dry-run", sandbox=sandbox, cwd=tmp_path)
    assert plan.code == 0
    assert "2 to create, 1 to update, 9 unchanged" in plan.err
    assert len(sandbox.records("customers")) == 10  # a dry run writes nothing
    ran = await cloudonex(*args, sandbox=sandbox, cwd=tmp_path)
    assert ran.code == 0
    assert "12 records: 2 created, 1 updated, 9 unchanged, 0 failed" in ran.err
    assert sandbox.records("customers")[0]["account"] == "Renamed"
    assert len(sandbox.records("customers")) == 12


@pytest.mark.slow
async def test_errors_are_one_line_with_a_meaningful_exit_code(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = await make_sandbox()
    shipped = await make_sandbox(style="shipped")

    async def fails(*args: str, server: SandboxServer | None = sandbox, **env: str) -> Ran:
        ran = await cloudonex(*args, sandbox=server, cwd=tmp_path, **env)
        [line] = ran.err.splitlines()  # one line
        assert line.startswith("cloudonex: error: ")
        assert "sandbox-key" not in ran.err + ran.out
        return ran

    assert (await fails("get", "customers", "1", CLOUDONEX_API_KEY="wrong-key")).code == 3
    assert (await fails("list", "widgets")).code == 2
    assert (await fails("get", "customers", "99")).code == 4
    unsupported = await fails("--profile", "shipped", "list", "transactions", server=shipped)
    assert unsupported.code == 5
    unreachable = await fails("get", "customers", "1", CLOUDONEX_BASE_URL="http://127.0.0.1:9")
    assert unreachable.code == 7
    assert "could not connect" in unreachable.err
    missing = await fails("list", "customers", server=None)
    assert missing.code == 2
    assert "CLOUDONEX_BASE_URL" in missing.err


@pytest.mark.slow
async def test_sync_reads_the_server_once_and_reports_the_requests_it_sent(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = await make_sandbox(max_page_size=100)
    rows = [{"account": f"P {n}", "email": f"p{n}@example.com"} for n in range(2000)]
    sandbox.seed("customers", rows)
    (tmp_path / "want.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ran = await cloudonex(
        "sync", "customers", "want.jsonl", "--key", "email", sandbox=sandbox, cwd=tmp_path
    )
    assert ran.code == 0, ran.err
    assert sandbox.count() == sandbox.count("list") == 20  # one scan, shared by plan and run
    assert "plan: 0 to create, 0 to update, 2000 unchanged" in ran.err
    assert "2000 records: 0 created, 0 updated, 2000 unchanged" in ran.err
    assert "; 20 requests" in ran.err


# -- cloudonex ratelimit: the window's length, estimated or the server's ---------------


class ServerClock(FakeClock):
    """A sandbox's clock: frozen, or one window on with each request the sandbox takes.

    It starts 6 s before a minute ends, about an hour ahead of this host's clock, so the
    command moves Reset onto its own clock by the Date header, to the second (the
    sandbox's clock stands still while it answers).
    """

    def __init__(self, *, per_request: float = 0.0) -> None:
        super().__init__((int(time.time()) // 60 + 60) * 60 - 6.0)
        self.per_request = per_request
        self.sandbox: SandboxServer | None = None

    def time(self) -> float:
        """The fake time, moved on ``per_request`` seconds for each request taken."""
        taken = len(self.sandbox.requests) if self.sandbox is not None else 0
        return super().time() + self.per_request * taken


ESTIMATED = "(estimated from one Reset; confirmed after the next)"


@pytest.mark.slow
async def test_ratelimit_shows_the_window_estimated_from_one_reset(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    # 30 per 60 s, asked 6 s before a window ends. The command's defaults (1000 per
    # hour) are not this server's, so they say nothing of its window: twice the 6 s.
    sandbox = await make_sandbox(rate_limit=30, rate_period=60, clock=ServerClock())
    ran = await cloudonex("ratelimit", sandbox=sandbox, cwd=tmp_path)
    assert ran.code == 0, ran.err
    limit, remaining, reset, window = ran.out.splitlines()
    assert limit == "limit      30 requests per window"
    assert remaining == "remaining  29"
    assert reset != "reset      not announced"
    assert window == f"window     about 12 s {ESTIMATED}"
    # A server announcing the limit configured (1000): the period configured, an hour.
    agreeing = await make_sandbox(clock=ServerClock())
    ran = await cloudonex("ratelimit", sandbox=agreeing, cwd=tmp_path)
    assert ran.code == 0, ran.err
    assert ran.out.splitlines()[-1] == f"window     about 3600 s {ESTIMATED}"


@pytest.mark.slow
async def test_ratelimit_shows_the_servers_window_once_two_resets_told_it(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    # The first answer (a 503, asked again at once) and the second come from successive
    # 60 s windows: their Resets tell the length.
    clock = ServerClock(per_request=60)
    sandbox = await make_sandbox(rate_limit=30, rate_period=60, clock=clock)
    clock.sandbox = sandbox
    sandbox.inject("error", status=503, retry_after=0)
    ran = await cloudonex("ratelimit", sandbox=sandbox, cwd=tmp_path)
    assert ran.code == 0, ran.err
    assert [r.status for r in sandbox.requests] == [503, 200]
    limit, remaining, _, window = ran.out.splitlines()
    assert (limit, remaining) == ("limit      30 requests per window", "remaining  29")
    assert window == "window     60 s"


@pytest.mark.slow
async def test_ratelimit_says_the_window_is_not_known_when_no_answer_announced_one(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    shipped = await make_sandbox(style="shipped")  # the deployed code sends no X-RateLimit-*
    ran = await cloudonex("--profile", "shipped", "ratelimit", sandbox=shipped, cwd=tmp_path)
    assert ran.code == 0, ran.err
    assert ran.out.splitlines()[2:] == [
        "reset      not announced",
        "window     not known: no answer announced a Reset (the client assumes 3600 s)",
    ]
