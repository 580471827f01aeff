"""``client.diagnose()`` and ``cloudonex doctor`` tell the kinds of server apart.

Each variant is a sandbox set up as one kind of real install; the diagnosis must name
what differs, say what to set, judge whether the configuration works as set, and do
it with at most 15 requests, every one a GET.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import attrs
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from cloudonex_async import (
    Client,
    ConfigurationError,
    Diagnosis,
    Finding,
    LocalLimiter,
    RateLimitError,
    RawResponse,
    Request,
    RequestTimeoutError,
    ResponseParseError,
    ResponseTooLargeError,
    TransportError,
    UnsupportedError,
)
from cloudonex_async.cli._doctor import exit_status
from cloudonex_async.errors import RouteNotFoundError
from cloudonex_async.testing import FakeClock, Faults, MockTransport, SandboxServer, json_response

from .conftest import SandboxFactory, wait_until
from .test_own_time import on_flaky_store

pytestmark = pytest.mark.filterwarnings("error")


@attrs.frozen
class Variant:
    """A sandbox, a client configuration, and what the diagnosis must say."""

    sandbox: dict[str, Any]
    expected: dict[str, tuple[str, str]]  # check -> (status, a phrase of summary + advice)
    ok: bool
    client: dict[str, Any] = attrs.field(factory=dict)
    suffix: str = ""  # appended to the sandbox's base URL
    exit: int | None = None  # cloudonex doctor's status (default: 0 if ok, else 2)


VARIANTS = {
    "documented": Variant(
        sandbox={},
        expected={
            "auth": ("ok", "header and in the URL"),
            "routes": ("ok", "URL rewriting works"),
            "profile": ("ok", "envelopes, with X-RateLimit headers: the documented API"),
            "rate_limit": ("ok", "of 1000 left"),
            "paging": ("ok", "all 25 records came on one page"),
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
            "resources": ("info", "transactions (it answers the customer list)"),
        },
        ok=True,
    ),
    "shipped without rewriting, profile documented": Variant(
        sandbox={"style": "shipped"},
        expected={
            # One fix for both: the shipped profile brings the ?ng= routes with it.
            "routes": ("ok", "only /?ng=api/v2/... works"),
            "profile": ("problem", "set profile='shipped' (or profile='auto')"),
        },
        ok=False,
    ),
    "shipped without rewriting, path routes asked for": Variant(
        sandbox={"style": "shipped"},
        client={"profile": "auto", "route_style": "path"},
        expected={"routes": ("problem", "set route_style='ng'")},
        ok=False,
    ),
    "shipped with rewriting": Variant(
        sandbox={"style": "shipped", "url_rewriting": True},
        client={"profile": "shipped"},
        expected={
            "routes": ("ok", "URL rewriting works"),
            "profile": ("ok", "shipped CloudOnex 4.x"),
            "resources": ("info", "not offered: invoices"),
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
        expected={"rate_limit": ("warning", "now 1000 requests per 3600 s: if your plan")},
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
            "base_url": ("warning", "the base URL ends in /api"),
            "routes": ("problem", "no CloudOnex API answers"),
        },
        ok=False,
    ),
    "a base URL that is a web page": Variant(
        sandbox={"style": "shipped"},
        client={"profile": "auto"},
        suffix="/login.php",
        expected={
            "base_url": ("warning", "points at a web page (login.php)"),
            "routes": ("problem", "without any page name"),
        },
        ok=False,
    ),
    "a host that hands only /api/ to PHP": Variant(
        sandbox={"ng_routes": False},
        expected={
            "auth": ("ok", "header and in the URL"),
            "routes": ("ok", "only /api/v2/... reaches the API"),
            "paging": ("ok", "all 25 records came on one page"),
        },
        ok=True,
    ),
    "a host that hands only /api/ to PHP, a wrong key": Variant(
        sandbox={"ng_routes": False},
        client={"api_key": "not-the-key"},
        expected={"auth": ("problem", "refuses the key both ways")},
        ok=False,
        exit=3,
    ),
    "a host that hands only /api/ to PHP, and strips Authorization": Variant(
        sandbox={"ng_routes": False, "strip_authorization": True},
        # The fix for the key brings the ?ng= routes of auth='query': say both at once.
        expected={
            "auth": ("problem", "set auth='query'"),
            "routes": ("problem", "set route_style='path'"),
        },
        ok=False,
    ),
    "a host that hands only /api/ to PHP, profile auto": Variant(
        sandbox={"ng_routes": False},
        client={"profile": "auto"},  # whose probe goes through ?ng= unless told otherwise
        expected={"routes": ("problem", "set it")},
        ok=False,
    ),
    "a sub-directory install": Variant(
        sandbox={"path_prefix": "/crm/v2"},
        expected={"base_url": ("ok", "/crm/v2"), "routes": ("ok", "URL rewriting works")},
        ok=True,
    ),
    "a server that fails": Variant(
        sandbox={"faults": Faults(error_rate=1.0, error_status=503)},
        expected={"reachable": ("problem", "fails (HTTP 503")},
        ok=False,
        exit=7,
    ),
    "shipped, plural item paths": Variant(
        sandbox={"style": "shipped"},
        client={"profile": "auto", "item_paths": "plural"},
        expected={"config": ("problem", "set item_paths='singular'")},
        ok=False,
    ),
    "documented, singular item paths": Variant(
        sandbox={},
        client={"item_paths": "singular"},
        expected={"config": ("problem", "set item_paths='plural'")},
        ok=False,
    ),
    "a wrong key": Variant(
        sandbox={},
        client={"api_key": "not-the-key"},
        expected={"auth": ("problem", "refuses the key both ways")},
        ok=False,
        exit=3,
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
    expected_exit = variant.exit if variant.exit is not None else (0 if variant.ok else 2)
    assert exit_status(diagnosis) == expected_exit
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
    assert diagnosis.requests == 0  # refused: nothing left
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
    spent = by_check(diagnosis)["budget"]
    assert spent.status == "problem"
    assert "run the diagnosis again in" in spent.advice
    assert diagnosis.requests == len(sandbox.requests) == 2  # the answers said: none left


async def test_a_spent_local_budget_does_not_hang_the_diagnosis(
    make_sandbox: SandboxFactory,
) -> None:
    sandbox = await make_sandbox(rate_limit=1, rate_period=3600)
    async with Client(base_url=sandbox.base_url, api_key=sandbox.api_key) as client:
        await client.request("GET", "customers")
        diagnosis = await client.diagnose()  # the budget is known to be spent for an hour
    spent = by_check(diagnosis)["budget"]
    assert spent.status == "problem"
    assert diagnosis.requests == 0  # held back here, never sent
    assert len(sandbox.requests) == 1  # the test's own


# -- the errors a user meets with a wrong base URL name it too ----------------------------


@pytest.mark.parametrize("style", ["documented", "shipped"])
async def test_errors_name_a_base_url_ending_in_api(
    make_sandbox: SandboxFactory, style: Literal["documented", "shipped"]
) -> None:
    sandbox = await make_sandbox(style=style)
    async with Client(
        base_url=f"{sandbox.base_url}/api", api_key=sandbox.api_key, profile=style
    ) as client:
        with pytest.raises(RouteNotFoundError) as raised:
            await client.customers.get(1)
    message = str(raised.value).lower()
    assert "the base url ends in /api" in message
    assert f"give the site root ({sandbox.base_url.lower()})" in message
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
    assert "set --auth query" in out
    assert "CLOUDONEX_* environment variables" in out
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
    assert checks["base_url"]["status"] == "warning"
    assert checks["routes"]["status"] == "problem"
    assert set(checks["base_url"]) == {"check", "status", "summary", "advice", "fix"}


def test_exit_status_follows_the_first_problem() -> None:

    def diagnosis(*findings: Finding) -> Diagnosis:
        return Diagnosis(findings, 1)

    assert exit_status(diagnosis(Finding("auth", "ok", "fine"))) == 0
    assert exit_status(diagnosis(Finding("reachable", "problem", "x"))) == 7
    assert exit_status(diagnosis(Finding("auth", "problem", "refuses the key both ways"))) == 3
    stripped = Finding("auth", "problem", "stripped", fix={"auth": "query"})
    assert exit_status(diagnosis(stripped)) == 2
    assert exit_status(diagnosis(Finding("budget", "problem", "spent"))) == 6
    assert exit_status(diagnosis(Finding("routes", "problem", "x"))) == 2


# -- TLS ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made with the openssl command)."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        if os.environ.get("CLOUDONEX_REQUIRE_OPENSSL") == "1":  # set by .ci/run
            pytest.fail("openssl is required here (CLOUDONEX_REQUIRE_OPENSSL=1) but missing")
        pytest.skip("needs the openssl command to make a certificate (apt-get install openssl)")
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
    assert untrusted.requests == 0  # the handshake failed: nothing was sent

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
        "ng_routes": st.sampled_from([True, True, False]),
        "strip_authorization": st.booleans(),
        "rate_limit_headers": st.booleans(),
        "max_page_size": st.sampled_from([5, 1000]),
        "path_prefix": st.sampled_from(["", "", "/crm"]),
    }
)
SETTINGS = st.fixed_dictionaries(
    {
        "profile": st.sampled_from(["documented", "shipped", "auto"]),
        "auth": st.sampled_from(["bearer", "query"]),
        "route_style": st.sampled_from([None, "path", "ng"]),
        "item_paths": st.sampled_from([None, None, "plural", "singular"]),
        "body_encoding": st.sampled_from([None, None, "json", "form"]),
        "rate_period": st.sampled_from([3600.0, 3600.0, 60.0]),
    }
)


@settings(max_examples=100, deadline=None)
@given(server=SERVERS, options=SETTINGS, suffix=st.sampled_from(["", "", "/api"]))
def test_works_as_set_means_a_client_so_set_lists_and_reads(
    server: dict[str, Any], options: dict[str, Any], suffix: str
) -> None:
    async def check() -> None:
        async with SandboxServer(**server) as sandbox:
            sandbox.seed(
                "customers", [{"account": f"C {n}", "email": f"c{n}@x.test"} for n in range(7)]
            )
            site: dict[str, Any] = {
                "base_url": sandbox.base_url + suffix,
                "api_key": sandbox.api_key,
            }

            def own_budget() -> LocalLimiter:  # each Client its own: settings may change
                return LocalLimiter(rate_period=options["rate_period"])

            try:
                client = Client(**site, **options, limiter=own_budget())
            except ConfigurationError:  # refused before any request: nothing to diagnose
                event("refused by Client()")
                return
            async with client:
                diagnosis = await client.diagnose()
            assert diagnosis.requests <= 15
            assert {r.method for r in sandbox.requests} == {"GET"}
            event(f"ok={diagnosis.ok}")
            fixes = {k: v for f in diagnosis.problems for k, v in f.fix.items()}
            if not diagnosis.ok:
                if not all(f.fix for f in diagnosis.problems):
                    return  # a problem no option fixes (a wrong base URL)
                options.update(fixes)  # the fixes it names, and nothing else, make it work
                event("fixed: " + ", ".join(sorted(fixes)))
            async with Client(**site, **options, limiter=own_budget()) as client:
                if fixes:
                    assert (await client.diagnose()).ok, fixes
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


# -- a diagnosis among the client's other work ---------------------------------------------


async def test_a_busy_client_is_not_called_unreachable(make_sandbox: SandboxFactory) -> None:
    sandbox = await make_sandbox(faults=Faults(stall_seconds=30))
    sandbox.inject("stall")  # the one call in flight holds the only slot
    async with Client(
        base_url=sandbox.base_url, api_key=sandbox.api_key, max_concurrency=1, max_wait=0.1
    ) as client:
        held = asyncio.create_task(client.request("GET", "customers"))
        await wait_until(lambda: bool(sandbox.requests))  # it holds the slot
        diagnosis = await client.diagnose()
        held.cancel()
        with pytest.raises(asyncio.CancelledError):
            await held
    found = by_check(diagnosis)
    assert "reachable" not in found
    assert found["budget"].status == "problem"
    assert "concurrency slot" in found["budget"].summary
    assert diagnosis.requests == 0


async def test_a_paced_client_stops_early_and_does_not_vouch_for_what_it_did_not_see(
    make_sandbox: SandboxFactory,
) -> None:
    sandbox = await make_sandbox()
    async with Client(
        base_url=sandbox.base_url,
        api_key=sandbox.api_key,
        pacing="smooth",
        rate_limit=300,  # one request every 12 s: more than a diagnosis waits
        limiter=LocalLimiter(rate_limit=300, pacing="smooth"),
    ) as client:
        diagnosis = await client.diagnose()
    budget = by_check(diagnosis)["budget"]
    assert budget.status == "problem"  # what it did not see, it cannot vouch for
    assert "pacing='smooth'" in budget.summary
    assert "stopped after 1 request:" in budget.summary
    assert "the key's budget is spent" not in budget.summary
    assert not diagnosis.ok
    assert diagnosis.requests == len(sandbox.requests) == 1


async def test_a_later_question_without_an_answer_is_named_not_fatal() -> None:
    def answer(request: Request) -> RawResponse:
        if request.path == "tickets":  # this listing never answers in time
            raise RequestTimeoutError("GET tickets: timed out", request_sent=True)
        if request.path == "batch/customers":
            return json_response({"success": False, "message": "Unknown Method!"}, status=405)
        return json_response({"success": True, "data": [], "meta": {"total_records": 0}})

    async with Client(
        base_url="https://crm.example.com",
        api_key="k" * 20,
        transport=MockTransport(answer),
        limiter=LocalLimiter(),
    ) as client:
        diagnosis = await client.diagnose()
    found = by_check(diagnosis)
    assert found["reachable"].status == "ok"
    assert "failing: tickets (timed out)" in found["resources"].summary
    assert found["resources"].status == "warning"
    assert diagnosis.ok


async def test_a_view_diagnoses_with_its_own_timeout_at_interactive_priority() -> None:
    seen: list[Request] = []

    def answer(request: Request) -> RawResponse:
        seen.append(request)
        return json_response({"success": False, "message": "Service Unavailable"}, status=503)

    async with Client(
        base_url="https://crm.example.com",
        api_key="k" * 20,
        timeout=0.3,
        transport=MockTransport(answer),
        limiter=LocalLimiter(),
    ) as client:
        diagnosis = await client.with_options(timeout=5, priority="bulk").diagnose()
    assert [r.timeout for r in seen] == [5]
    assert by_check(diagnosis)["reachable"].summary.endswith(
        "fails (HTTP 503: Service Unavailable)"
    )


async def test_a_429_during_the_diagnosis_pauses_the_clients_budget(
    make_sandbox: SandboxFactory,
) -> None:
    sandbox = await make_sandbox(rate_limit=2, rate_limit_headers=False)  # says nothing before
    async with Client(
        base_url=sandbox.base_url, api_key=sandbox.api_key, limiter=LocalLimiter()
    ) as client:
        diagnosis = await client.diagnose()
        assert by_check(diagnosis)["budget"].status == "problem"
        assert diagnosis.requests == len(sandbox.requests) == 3  # the third was the 429
        with pytest.raises(RateLimitError):  # the limiter heard it: nothing more is sent
            await client.request("GET", "customers", max_wait=0)
    assert len(sandbox.requests) == 3


@pytest.mark.parametrize(
    ("base", "status", "headers", "said"),
    [
        ("https://crm.example.com/login.php", 200, {}, "points at a web page (login.php)"),
        ("https://crm.example.com/api", 200, {}, "the base URL ends in /api"),
        (
            "https://old.example.com",
            301,
            {"Location": "https://crm.example.com/"},
            "it redirects to https://crm.example.com/",
        ),
    ],
)
async def test_a_page_at_200_or_a_redirect_names_the_base_url(
    base: str, status: int, headers: dict[str, str], said: str
) -> None:
    def page(request: Request) -> RawResponse:
        return RawResponse(status, {"Content-Type": "text/html", **headers}, b"<html>Log in</html>")

    async with Client(
        base_url=base, api_key="k" * 20, transport=MockTransport(page), limiter=LocalLimiter()
    ) as client:
        with pytest.raises(ResponseParseError) as raised:
            await client.customers.get(1)
    assert said in str(raised.value)


# -- a diagnosis that cannot see everything never says "works as set" ----------------------


def listing(request: Request) -> RawResponse:
    """A documented server's answers (no records), for MockTransport handlers."""
    if request.path == "batch/customers":
        return json_response({"success": False, "message": "Unknown Method!"}, status=405)
    return json_response({"success": True, "data": [], "meta": {"total_records": 0}})


def mock_client(handler: Callable[[Request], RawResponse], **options: Any) -> Client:
    return Client(
        base_url="https://crm.example.com",
        api_key="Kq" * 16,
        transport=MockTransport(handler),
        limiter=LocalLimiter(),
        **options,
    )


@pytest.mark.parametrize("failure", ["dropped", "timeout", "too large", "empty", "html 500"])
@pytest.mark.parametrize("question", [2, 3])
async def test_a_question_the_judgements_rest_on_fails_and_nothing_is_vouched_for(
    failure: str, question: int
) -> None:
    asked: list[Request] = []

    def answer(request: Request) -> RawResponse:
        asked.append(request)
        if len(asked) != question:
            return listing(request)
        if failure == "dropped":
            raise TransportError("GET: the connection failed", request_sent=True)
        if failure == "timeout":
            raise RequestTimeoutError("GET: timed out", request_sent=True)
        if failure == "too large":
            raise ResponseTooLargeError("GET: too large", request_sent=True)
        if failure == "empty":
            return RawResponse(200, {}, b"")
        return RawResponse(500, {"Content-Type": "text/html"}, b"<html>Fatal error</html>")

    async with mock_client(answer) as client:
        diagnosis = await client.diagnose()
    assert not diagnosis.ok, diagnosis.findings
    [problem] = diagnosis.problems
    assert problem.check in ("reachable", "config")
    assert "routes" not in by_check(diagnosis)  # no verdict on what it could not see


async def test_a_shipped_server_behind_a_gateway_that_adds_budget_headers() -> None:
    headers = {"X-RateLimit-Limit": "1000", "X-RateLimit-Remaining": "990"}

    def shipped(request: Request) -> RawResponse:
        if request.path == "customers":
            return json_response([{"id": "1", "company": "Ada"}], headers=headers)
        return json_response({"error": True, "message": "Unknown resources requested!"})

    async with mock_client(shipped, profile="auto") as client:
        diagnosis = await client.diagnose()
    found = by_check(diagnosis)["profile"]
    assert found.status == "problem"
    assert found.fix == {"profile": "shipped"}
    assert "with X-RateLimit headers: shipped CloudOnex 4.x code" in found.summary


@pytest.mark.parametrize("where", ["message", "location"])
async def test_the_key_a_server_echoes_never_reaches_the_findings(where: str) -> None:
    key = "Kq" * 16

    def echo(request: Request) -> RawResponse:
        if where == "message":
            return json_response({"success": False, "message": f"bad key {key}"}, status=500)
        return RawResponse(302, {"Location": f"https://login.example.com/?key={key}"}, b"")

    async with mock_client(echo) as client:
        diagnosis = await client.diagnose()
    shown = json.dumps(diagnosis.to_dict())
    assert key[:8] not in shown
    assert not diagnosis.ok


async def test_an_install_that_really_lives_at_api(make_sandbox: SandboxFactory) -> None:
    sandbox = await make_sandbox(path_prefix="/api")
    assert sandbox.base_url.endswith("/api")
    diagnosis = await diagnose(sandbox, Variant(sandbox={}, expected={}, ok=True))
    assert diagnosis.ok, diagnosis.problems
    assert by_check(diagnosis)["base_url"].summary.endswith("(unusual, but the API answers there)")
    async with Client(base_url=sandbox.base_url, api_key=sandbox.api_key) as client:
        await client.customers.list().collect()  # it works as set
        with pytest.raises(UnsupportedError) as raised:  # a missing resource is just that
            await client.request("GET", "nosuch")
    assert "or the base URL is wrong" in str(raised.value)


async def test_a_rate_period_far_shorter_than_the_servers_window(
    make_sandbox: SandboxFactory,
) -> None:
    # One clock for both, early in an hour-long window (so the Reset is far off).
    clock = FakeClock(start=1_800_000_000 + 10)
    sandbox = await make_sandbox(clock=clock)
    async with Client(
        base_url=sandbox.base_url,
        api_key=sandbox.api_key,
        clock=clock,
        limiter=LocalLimiter(rate_limit=100, rate_period=60, clock=clock),
    ) as client:
        diagnosis = await client.diagnose()
    found = by_check(diagnosis)["rate_limit"]
    assert found.status == "problem"
    assert "set rate_period=3600" in found.advice
    assert found.fix == {"rate_period": 3600.0}


async def test_a_budget_store_that_fails_is_a_finding_of_its_own(
    make_sandbox: SandboxFactory,
) -> None:
    sandbox, store, limiter = await on_flaky_store(make_sandbox)
    store.fail.add("take")  # Redis has gone: nothing can be sent
    async with Client(base_url=sandbox.base_url, api_key=sandbox.api_key, limiter=limiter) as c:
        diagnosis = await c.diagnose()
    found = by_check(diagnosis)["store"]
    assert found.status == "problem"
    assert "nothing was sent" in found.summary
    assert exit_status(diagnosis) == 7
    assert diagnosis.requests == sandbox.count() == 0


async def test_a_raising_event_hook_does_not_spoil_the_diagnosis(
    make_sandbox: SandboxFactory, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox = await make_sandbox()

    def broken(event: object) -> None:
        raise RuntimeError("the metrics backend is down")

    async with Client(
        base_url=sandbox.base_url, api_key=sandbox.api_key, event_hooks=[broken]
    ) as client:
        diagnosis = await client.diagnose()
    assert diagnosis.ok, diagnosis.problems
    assert diagnosis.requests == len(sandbox.requests)
    assert "event hook" in caplog.text
