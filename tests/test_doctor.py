"""``client.diagnose()`` and ``cloudonex doctor`` tell the kinds of server apart.

Each variant is a sandbox set up as one kind of real install; the diagnosis must name
what differs, say what to set, judge whether the configuration works as set, and do
it with at most 15 requests, every one a GET.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path
from typing import Any, Literal

import attrs
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from cloudonex_async import Client, Diagnosis, Finding, UnsupportedError
from cloudonex_async.errors import RouteNotFoundError
from cloudonex_async.testing import FakeClock, SandboxServer

from .conftest import SandboxFactory

pytestmark = pytest.mark.filterwarnings("error")


@attrs.frozen
class Variant:
    """A sandbox, a client configuration, and what the diagnosis must say."""

    sandbox: dict[str, Any]
    expected: dict[str, tuple[str, str]]  # check -> (status, a phrase of summary + advice)
    ok: bool
    client: dict[str, Any] = attrs.field(factory=dict)
    suffix: str = ""  # appended to the sandbox's base URL


VARIANTS = {
    "documented": Variant(
        sandbox={},
        expected={
            "auth": ("ok", "header and in the URL"),
            "routes": ("ok", "URL rewriting works"),
            "profile": ("ok", "as the vendor documents it"),
            "rate_limit": ("ok", "of 1000 left"),
            "paging": ("ok", "pages of up to 100"),
            "batch": ("ok", "exists"),
            "resources": ("ok", "customers, invoices, transactions"),
        },
        ok=True,
    ),
    "shipped without rewriting": Variant(
        sandbox={"style": "shipped"},
        client={"profile": "auto"},
        expected={
            "routes": ("ok", "no URL rewriting"),
            "profile": ("ok", "shipped CloudOnex 4.x"),
            "rate_limit": ("warning", "no X-RateLimit headers"),
            "paging": ("info", "no paging"),
            "batch": ("info", "no batch endpoint"),
            "resources": ("warning", "transactions (answers the customer list)"),
        },
        ok=True,
    ),
    "shipped without rewriting, profile documented": Variant(
        sandbox={"style": "shipped"},
        expected={
            "routes": ("problem", "set route_style='ng'"),
            "profile": ("problem", "set profile='shipped'"),
        },
        ok=False,
    ),
    "shipped with rewriting": Variant(
        sandbox={"style": "shipped", "url_rewriting": True},
        client={"profile": "shipped"},
        expected={
            "routes": ("ok", "URL rewriting works"),
            "profile": ("ok", "shipped CloudOnex 4.x"),
            "resources": ("warning", "not offered: invoices"),
        },
        ok=True,
    ),
    "shipped, json bodies": Variant(
        sandbox={"style": "shipped"},
        client={"profile": "auto", "body_encoding": "json"},
        expected={"config": ("problem", "set body_encoding='form'")},
        ok=False,
    ),
    "a page-size cap": Variant(
        sandbox={"max_page_size": 10},
        expected={"paging": ("info", "pages hold at most 10 records (asked for 100; 25 in all)")},
        ok=True,
    ),
    "no rate-limit headers": Variant(
        sandbox={"rate_limit_headers": False},
        expected={"rate_limit": ("warning", "rate_limit=1000 per rate_period=3600 s")},
        ok=True,
    ),
    "a host that strips Authorization": Variant(
        sandbox={"strip_authorization": True},
        expected={"auth": ("problem", "strips it); ?api_key= works → set auth='query'")},
        ok=False,
    ),
    "a host that strips Authorization, auth='query'": Variant(
        sandbox={"strip_authorization": True},
        client={"auth": "query"},
        expected={"auth": ("ok", "?api_key= works"), "batch": ("ok", "exists")},
        ok=True,
    ),
    "documented without rewriting": Variant(
        sandbox={"url_rewriting": False},
        expected={"routes": ("problem", "only /?ng=api/v2/... works → set route_style='ng'")},
        ok=False,
    ),
    "a base URL ending in /api": Variant(
        sandbox={},
        suffix="/api",
        expected={
            "base_url": ("problem", "the base URL ends in /api"),
            "routes": ("problem", "no CloudOnex API answers"),
        },
        ok=False,
    ),
    "a base URL that is a web page": Variant(
        sandbox={"style": "shipped"},
        client={"profile": "auto"},
        suffix="/login.php",
        expected={"base_url": ("problem", "points at a web page (login.php)")},
        ok=False,
    ),
    "a wrong key": Variant(
        sandbox={},
        client={"api_key": "not-the-key"},
        expected={"auth": ("problem", "refuses the key both ways")},
        ok=False,
    ),
}


def text_of(finding: Finding) -> str:
    return f"{finding.summary} → {finding.advice}" if finding.advice else finding.summary


def by_check(diagnosis: Diagnosis) -> dict[str, Finding]:
    checks = [f.check for f in diagnosis.findings]
    assert len(checks) == len(set(checks)), f"one finding per check: {checks}"
    return {f.check: f for f in diagnosis.findings}


async def diagnose(sandbox: SandboxServer, variant: Variant) -> Diagnosis:
    options = {"api_key": sandbox.api_key, "timeout": 5.0, **variant.client}
    async with Client(base_url=sandbox.base_url + variant.suffix, **options) as client:
        return await client.diagnose()


@pytest.mark.parametrize("name", VARIANTS)
async def test_each_kind_of_server_is_told_apart(make_sandbox: SandboxFactory, name: str) -> None:
    variant = VARIANTS[name]
    sandbox = await make_sandbox(**variant.sandbox)
    sandbox.seed("customers", [{"account": f"C {n}", "email": f"c{n}@x.test"} for n in range(25)])
    before = {table: sandbox.records(table) for table in ("customers", "invoices", "users")}

    diagnosis = await diagnose(sandbox, variant)

    found = by_check(diagnosis)
    for check, (status, phrase) in variant.expected.items():
        assert check in found, f"no {check} finding: {diagnosis.findings}"
        assert found[check].status == status, found[check]
        assert phrase in text_of(found[check]), found[check]
    assert diagnosis.ok is variant.ok, diagnosis.problems
    if variant.ok:  # nothing else it reports stands in the way
        assert not diagnosis.problems
    # At most 15 harmless requests: counted, all GETs, nothing created or changed.
    assert 1 <= diagnosis.requests <= 15
    assert len(sandbox.requests) == diagnosis.requests
    assert {r.method for r in sandbox.requests} == {"GET"}
    assert before == {table: sandbox.records(table) for table in before}
    assert sandbox.api_key not in json.dumps(diagnosis.to_dict())


async def test_an_unreachable_server_is_one_finding_not_an_exception() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with Client(base_url=f"http://127.0.0.1:{port}", api_key="k" * 20) as client:
        diagnosis = await client.diagnose()
    found = by_check(diagnosis)
    assert found["reachable"].status == "problem"
    assert "could not connect" in found["reachable"].summary
    assert diagnosis.requests == 1
    assert not diagnosis.ok


async def test_the_servers_clock_is_compared_with_ours(make_sandbox: SandboxFactory) -> None:
    import time

    ahead = FakeClock(start=time.time() + 300)  # the server's clock runs 5 minutes fast
    sandbox = await make_sandbox(clock=ahead)
    diagnosis = await diagnose(sandbox, Variant(sandbox={}, expected={}, ok=True))
    clock = by_check(diagnosis)["clock"]
    assert clock.status == "warning"
    assert "300 s ahead of ours" in clock.summary or "299 s ahead of ours" in clock.summary
    assert diagnosis.ok  # the client corrects for it


async def test_a_spent_budget_is_a_finding_and_stops_the_questions(
    make_sandbox: SandboxFactory,
) -> None:
    sandbox = await make_sandbox(rate_limit=2, rate_period=3600)
    diagnosis = await diagnose(sandbox, Variant(sandbox={}, expected={}, ok=False))
    spent = by_check(diagnosis)["rate_limit"]
    assert spent.status == "problem"
    assert "run the diagnosis again in" in spent.advice
    assert diagnosis.requests <= 3


async def test_a_spent_local_budget_does_not_hang_the_diagnosis(
    make_sandbox: SandboxFactory,
) -> None:
    sandbox = await make_sandbox(rate_limit=1, rate_period=3600)
    async with Client(base_url=sandbox.base_url, api_key=sandbox.api_key) as client:
        await client.request("GET", "customers")
        diagnosis = await client.diagnose()  # the budget is known to be spent for an hour
    spent = by_check(diagnosis)["rate_limit"]
    assert spent.status == "problem"
    assert diagnosis.requests == 1
    assert len(sandbox.requests) == 1


# -- the errors a user meets with a wrong base URL name it too ----------------------------


@pytest.mark.parametrize("style", ["documented", "shipped"])
async def test_errors_name_a_base_url_ending_in_api(
    make_sandbox: SandboxFactory, style: Literal["documented", "shipped"]
) -> None:
    sandbox = await make_sandbox(style=style)
    async with Client(
        base_url=f"{sandbox.base_url}/api", api_key=sandbox.api_key, profile=style
    ) as client:
        with pytest.raises((RouteNotFoundError, UnsupportedError)) as raised:
            await client.customers.get(1)
    message = str(raised.value).lower()
    assert "the base url ends in /api" in message
    assert "does not offer" not in message


# -- the command line ----------------------------------------------------------------------


async def run_doctor(
    sandbox: SandboxServer, *args: str, suffix: str = "", **env: str
) -> tuple[int, str, str]:
    import asyncio
    import os

    environ = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDONEX_")}
    environ.update(
        HOME=str(Path(__file__).parent),
        CLOUDONEX_BASE_URL=sandbox.base_url + suffix,
        CLOUDONEX_API_KEY=sandbox.api_key,
        **env,
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cloudonex_async",
        "doctor",
        *args,
        env=environ,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.slow
async def test_cloudonex_doctor_prints_a_table_and_exits_by_the_verdict(
    make_sandbox: SandboxFactory,
) -> None:
    good = await make_sandbox()
    code, out, err = await run_doctor(good)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["CHECK", "STATUS", "FINDING"]
    assert any(line.startswith("auth") and " ok " in line for line in lines)
    assert "the configuration works as set" in out
    assert good.api_key not in out + err

    stripped = await make_sandbox(strip_authorization=True)
    code, out, err = await run_doctor(stripped)
    assert code == 2
    assert "PROBLEM" in out
    assert "set --auth query (CLOUDONEX_AUTH=query)" in out
    assert "does not work as set" in out
    code, out, err = await run_doctor(stripped, CLOUDONEX_AUTH="query")
    assert code == 0, out


@pytest.mark.slow
async def test_cloudonex_doctor_json(make_sandbox: SandboxFactory) -> None:
    sandbox = await make_sandbox()
    code, out, _ = await run_doctor(sandbox, "--format", "json", suffix="/api")
    assert code == 2
    report = json.loads(out)
    assert report["ok"] is False
    assert report["requests"] <= 15
    checks = {f["check"]: f for f in report["findings"]}
    assert checks["base_url"]["status"] == "problem"
    assert set(checks["base_url"]) == {"check", "status", "summary", "advice"}


def test_exit_status_follows_the_first_problem() -> None:
    from cloudonex_async.cli._doctor import exit_status

    def diagnosis(*findings: Finding) -> Diagnosis:
        return Diagnosis(findings, 1)

    assert exit_status(diagnosis(Finding("auth", "ok", "fine"))) == 0
    assert exit_status(diagnosis(Finding("reachable", "problem", "x"))) == 7
    assert exit_status(diagnosis(Finding("auth", "problem", "refuses the key both ways"))) == 3
    assert exit_status(diagnosis(Finding("rate_limit", "problem", "spent"))) == 6
    assert exit_status(diagnosis(Finding("routes", "problem", "x"))) == 2


# -- TLS ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made with the openssl command)."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command (Debian: apt-get install openssl)")
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_tls_an_untrusted_certificate_is_named(
    make_sandbox: SandboxFactory, certificate: tuple[Path, Path]
) -> None:
    import ssl

    cert, key = certificate
    serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    serving.load_cert_chain(cert, key)
    sandbox = await make_sandbox(ssl=serving)
    assert sandbox.base_url.startswith("https://")

    untrusted = await diagnose(sandbox, Variant(sandbox={}, expected={}, ok=False))
    tls = by_check(untrusted)["tls"]
    assert tls.status == "problem"
    assert "certificate" in tls.advice
    assert not untrusted.ok
    assert untrusted.requests == 1

    trusting = ssl.create_default_context(cafile=str(cert))
    trusted = await diagnose(
        sandbox, Variant(sandbox={}, client={"ssl": trusting}, expected={}, ok=True)
    )
    assert by_check(trusted)["tls"].status == "ok"
    assert trusted.ok

    unchecked = await diagnose(
        sandbox, Variant(sandbox={}, client={"ssl": False}, expected={}, ok=True)
    )
    assert by_check(unchecked)["tls"].status == "warning"


# -- the verdict holds: "works as set" means a client so set works -----------------------

SERVERS = st.fixed_dictionaries(
    {
        "style": st.sampled_from(["documented", "shipped"]),
        "url_rewriting": st.booleans(),
        "strip_authorization": st.booleans(),
        "rate_limit_headers": st.booleans(),
        "max_page_size": st.sampled_from([5, 1000]),
    }
)
SETTINGS = st.fixed_dictionaries(
    {
        "profile": st.sampled_from(["documented", "shipped", "auto"]),
        "auth": st.sampled_from(["bearer", "query"]),
        "route_style": st.sampled_from([None, "path", "ng"]),
    }
)


@settings(max_examples=60, deadline=None)
@given(server=SERVERS, options=SETTINGS, suffix=st.sampled_from(["", "", "/api"]))
def test_works_as_set_means_a_client_so_set_lists_and_reads(
    server: dict[str, Any], options: dict[str, Any], suffix: str
) -> None:
    async def check() -> None:
        async with SandboxServer(**server) as sandbox:
            sandbox.seed(
                "customers", [{"account": f"C {n}", "email": f"c{n}@x.test"} for n in range(7)]
            )
            async with Client(
                base_url=sandbox.base_url + suffix, api_key=sandbox.api_key, **options
            ) as client:
                diagnosis = await client.diagnose()
                assert diagnosis.requests <= 15
                assert {r.method for r in sandbox.requests} == {"GET"}
                event(f"ok={diagnosis.ok}")
                if not diagnosis.ok:
                    return
                # What the diagnosis vouched for: the listing and a read work as set.
                listed = [c async for c in client.customers.list()]
                assert sorted(str(c.account) for c in listed) == [f"C {n}" for n in range(7)]
                first = listed[0]
                assert first.id is not None
                assert (await client.customers.get(first.id)).account == first.account

    asyncio.run(check())


async def test_an_empty_server_does_not_vouch_for_its_page_size(
    make_sandbox: SandboxFactory,
) -> None:
    sandbox = await make_sandbox(max_page_size=10)  # a cap no listing shows yet
    diagnosis = await diagnose(sandbox, Variant(sandbox={}, expected={}, ok=True))
    paging = by_check(diagnosis)["paging"]
    assert paging.status == "info"
    assert "no customers yet" in paging.summary


@pytest.mark.slow
async def test_the_table_shown_in_the_docs_is_what_doctor_prints(
    make_sandbox: SandboxFactory,
) -> None:
    page = (Path(__file__).parent.parent / "docs" / "real-servers.md").read_text()
    shown = page.split("```text\nCHECK", 1)[1].split("```", 1)[0]
    sandbox = await make_sandbox(style="shipped")
    sandbox.seed("customers", [{"account": "Ada", "email": "ada@example.com"}])
    code, out, _ = await run_doctor(sandbox, COLUMNS="100")
    assert code == 2
    out = out.replace(sandbox.base_url, "https://crm.example.com").replace(
        "tls         info     plain http: the key travels unencrypted",
        "tls         ok       https with a verified certificate",
    )
    assert "CHECK" + shown == out
