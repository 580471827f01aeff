"""No secret is shown: records' secrets are masked, never sent back, and the key never leaks.

Users' and customers' secret columns (password hashes, login tokens) are held as
:class:`Secret`, shown masked everywhere (repr, str, JSON, CSV, tables, the CLI) and
left out when a record read from the server is sent back. The API key is scrubbed
from every server text before it is cut to length, whatever position and length.
"""

from __future__ import annotations

import asyncio
import copy
import csv
import json
import logging
import pickle
import string
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import attrs
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import cloudonex_async.models
from cloudonex_async import (
    Client,
    CloudOnexError,
    Customer,
    Event,
    LocalLimiter,
    Model,
    RawResponse,
    Request,
    RetryPolicy,
    Secret,
    User,
)
from cloudonex_async.testing import FakeClock, MockTransport, SandboxServer, json_response

from .conftest import ClientFactory, SandboxFactory
from .test_cli import cloudonex

MASK = "********"

# Every secret column of the vendor's tables, with a value of its realistic shape.
USER_SECRETS = {
    "password": "$2y$10$Kq3wZ9pL1mN5bV7cX2zA4eRtY6uI8oP0aS3dF5gH7jK9lQ1wE3rTy",
    "pwresetkey": "f3a9c2e1b7d54a6c8e0f1a2b3c4d5e6f",
    "autologin": "9b8a7c6d5e4f3a2b1c0d9e8f7a6b5c4d",
    "api_token": "tok_4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b",
    "at": "at_1f2e3d4c5b6a79880716253443526170",
    "pin": "73918264",
}
CUSTOMER_SECRETS = {
    "password": "$2y$10$Zx8Cv7Bn6Mm5Ll4Kk3Jj2Hh1Gg0Ff9Dd8Ss7Aa6Qq5Ww4Ee3Rr2Tt",
    "token": "ctok_0a1b2c3d4e5f60718293a4b5c6d7e8f9",
    "autologin": "c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6",
    "pwresetkey": "e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2",
}
ALL_SECRETS = [*USER_SECRETS.values(), *CUSTOMER_SECRETS.values()]


def assert_no_secret_in(*texts: str) -> None:
    for text in texts:
        for value in ALL_SECRETS:
            assert value not in text


# -- the type --------------------------------------------------------------------------


def test_a_secret_is_masked_everywhere_and_its_value_reachable_on_request() -> None:
    secret = Secret("hunter2-is-not-a-password")
    for shown in (repr(secret), str(secret), f"{secret}", f"{secret!r}", f"{secret:>12}"):
        assert "hunter2" not in shown
    assert str(secret) == MASK
    assert repr(secret) == f"Secret('{MASK}')"
    assert json.dumps({"p": secret}, default=str) == f'{{"p": "{MASK}"}}'
    assert repr([secret]) == f"[Secret('{MASK}')]"
    assert secret.get_secret_value() == "hunter2-is-not-a-password"
    # Equal by value, hashable, and never equal to a plain str.
    assert secret == Secret("hunter2-is-not-a-password")
    assert secret != Secret("another")
    assert secret != "hunter2-is-not-a-password"
    assert len({secret, Secret("hunter2-is-not-a-password"), Secret("x")}) == 2
    assert {secret: 1}[Secret("hunter2-is-not-a-password")] == 1
    # An empty secret reads as empty (nothing to hide); copies keep the value.
    assert (str(Secret("")), bool(Secret("")), bool(secret)) == ("", False, True)
    for twin in (copy.copy(secret), copy.deepcopy(secret), pickle.loads(pickle.dumps(secret))):
        assert twin == secret
    with pytest.raises(TypeError):
        Secret(1234)  # type: ignore[arg-type]


def test_the_secret_fields_of_users_and_customers_are_known() -> None:
    for name in USER_SECRETS:
        assert User.holds_secret(name)
    for name in CUSTOMER_SECRETS:
        assert Customer.holds_secret(name)
    for name in ("remember_token", "two_factor_secret", "api_key", "vtoken"):
        assert Model.holds_secret(name)  # by name, in any record
    for name in ("email", "account", "username", "status", "pin_enabled", "otp", "path"):
        assert not User.holds_secret(name)
        assert not Customer.holds_secret(name)


def test_no_declared_field_holds_a_secret_as_plain_text() -> None:
    # A declared field named like a secret must be typed Secret, or it would show.
    for name in cloudonex_async.models.__all__:
        model = getattr(cloudonex_async.models, name)
        if isinstance(model, type) and issubclass(model, Model):
            for field in attrs.fields(model):
                if model.holds_secret(field.name):
                    assert "Secret" in str(field.type), f"{name}.{field.name}"


# -- read from the server: held as Secret, shown masked ---------------------------------


Style = Literal["documented", "shipped"]
STYLES: list[Style] = ["documented", "shipped"]


async def seeded(make_sandbox: SandboxFactory, style: Style) -> tuple[SandboxServer, int, int]:
    """A sandbox with one user and one customer whose every secret column is set."""
    sandbox = await make_sandbox(style=style)
    [user_id] = sandbox.seed(
        "users",
        [{"username": "ann", "fullname": "Ann Lee", "email": "ann@example.com", **USER_SECRETS}],
    )
    [customer_id] = sandbox.seed(
        "customers",
        [{"account": "Jane Roe", "email": "jane@example.com", "city": "Oslo", **CUSTOMER_SECRETS}],
    )
    return sandbox, user_id, customer_id


def assert_held_as_secrets(model: Model, secrets: Mapping[str, str]) -> None:
    for name, value in secrets.items():
        held = model.extra[name]
        assert isinstance(held, Secret), name
        assert held.get_secret_value() == value  # kept, reachable deliberately
        assert str(held) == MASK
    shown = [
        repr(model),
        str(model),
        repr(model.extra),
        str(dict(model.extra)),
        json.dumps(dict(model.extra), default=str),
        "\t".join(f"{k}={v}" for k, v in model.extra.items()),  # a hand-made table row
    ]
    assert_no_secret_in(*shown)


@pytest.mark.parametrize("style", STYLES)
async def test_every_secret_a_server_sends_is_held_masked(
    make_sandbox: SandboxFactory,
    make_client: ClientFactory,
    caplog: pytest.LogCaptureFixture,
    style: Style,
) -> None:
    sandbox, user_id, customer_id = await seeded(make_sandbox, style)
    client = make_client(sandbox, profile=style)
    caplog.set_level(logging.DEBUG)
    user = await client.users.get(user_id)
    [listed_user] = await client.users.list().collect()
    customer = await client.customers.get(customer_id)
    [listed_customer] = await client.customers.list().collect()
    for each_user in (user, listed_user):
        assert_held_as_secrets(each_user, USER_SECRETS)
    for each_customer in (customer, listed_customer):
        assert_held_as_secrets(each_customer, CUSTOMER_SECRETS)
    assert_no_secret_in(repr([user, customer]), *(r.getMessage() for r in caplog.records))


async def test_a_shipped_servers_new_user_comes_back_with_its_secrets_masked(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await make_sandbox(style="shipped")
    client = make_client(sandbox, profile="shipped")
    bob = await client.users.create(
        {"username": "bob", "fullname": "Bob Ross", "password": "hunter2", "user_type": "2"}
    )
    row = sandbox.store["users"][bob.id or 0]
    names = ("password", "autologin", "api_token", "at")
    assert_held_as_secrets(bob, {k: str(row[k]) for k in names})
    # The secret columns a real server answers (customers' token, users' at and pin).
    assert {"at", "pin"} <= set(bob.extra)
    [customer_id] = sandbox.seed("customers", [{"account": "Jo"}])
    assert "token" in (await client.customers.get(customer_id)).extra


# -- the CLI never prints them ---------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("style", STYLES)
async def test_the_cli_never_prints_a_secret(
    make_sandbox: SandboxFactory, style: Style, tmp_path: Path
) -> None:
    sandbox, _, customer_id = await seeded(make_sandbox, style)
    env = {"CLOUDONEX_PROFILE": style}

    async def run(*args: str) -> str:
        ran = await cloudonex(*args, sandbox=sandbox, cwd=tmp_path, **env)
        assert ran.code == 0, ran.err
        assert_no_secret_in(ran.out, ran.err)
        return ran.out

    formats = ("jsonl", "csv", "table")
    outputs = await asyncio.gather(
        *(run("users", "--format", f) for f in formats),
        *(run("list", "customers", "--format", f) for f in formats),
        run("get", "customers", str(customer_id)),
        run("export", "customers", "-o", "customers.csv"),
        run("export", "customers", "-o", "customers.jsonl"),
    )
    users_jsonl, users_csv, _, customers_jsonl, customers_csv, _, got = outputs[:7]
    exported_csv = (tmp_path / "customers.csv").read_text(encoding="utf-8")
    exported_jsonl = (tmp_path / "customers.jsonl").read_text(encoding="utf-8")
    assert_no_secret_in(exported_csv, exported_jsonl)
    # The columns are there, masked.
    [user] = [json.loads(line) for line in users_jsonl.splitlines()]
    [user_row] = csv.DictReader(users_csv.splitlines())
    for name in USER_SECRETS:
        assert user[name] == user_row[name] == MASK
    rows = [
        json.loads(customers_jsonl),
        json.loads(got),
        json.loads(exported_jsonl),
        *csv.DictReader(customers_csv.splitlines()),
        *csv.DictReader(exported_csv.splitlines()),
    ]
    for row in rows:
        for name in CUSTOMER_SECRETS:
            assert row[name] == MASK


@pytest.mark.slow
async def test_an_exported_file_imported_again_keeps_the_servers_secrets(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox, _, customer_id = await seeded(make_sandbox, "documented")
    exported = await cloudonex(
        "export", "customers", "-o", "customers.csv", sandbox=sandbox, cwd=tmp_path
    )
    assert exported.code == 0, exported.err
    text = (tmp_path / "customers.csv").read_text(encoding="utf-8")
    (tmp_path / "customers.csv").write_text(text.replace("Oslo", "Bergen"), encoding="utf-8")
    synced = await cloudonex(
        "sync", "customers", "customers.csv", "--key", "email", sandbox=sandbox, cwd=tmp_path
    )
    assert synced.code == 0, synced.err
    [stored] = sandbox.records("customers")
    assert stored["city"] == "Bergen"
    for name, value in CUSTOMER_SECRETS.items():
        assert stored[name] == value  # never overwritten by the mask
    assert stored["id"] == customer_id


# -- sent back: never the server's secret, always the caller's plain text --------------


def echo_server(record: dict[str, object]) -> tuple[MockTransport, list[Request]]:
    """A documented server with one customer 7 that answers every write with it."""
    writes: list[Request] = []

    def handler(request: Request) -> RawResponse:
        if request.method == "GET":
            return json_response({"success": True, "data": record})
        writes.append(request)
        return json_response({"success": True, "data": {**record, "id": 7}})

    return MockTransport(handler), writes


def sent_fields(request: Request) -> dict[str, object]:
    assert request.body is not None
    if request.body_encoding == "form":
        return {k: v for k, _, v in (p.partition("=") for p in request.body.decode().split("&"))}
    body: dict[str, object] = json.loads(request.body)
    return body


@pytest.mark.parametrize("encoding", ["json", "form"])
async def test_a_record_read_from_the_server_and_sent_back_never_echoes_its_secrets(
    encoding: Literal["json", "form"],
) -> None:
    record: dict[str, object] = {
        "id": 7,
        "account": "Jane",
        "city": "Oslo",
        "tier": "gold",
        **CUSTOMER_SECRETS,
        "items": [{"id": 1, "token": "item-token-0123456789"}],  # nested too
    }
    transport, writes = echo_server(record)
    async with Client(
        base_url="https://crm.example.com",
        api_key="k",
        limiter=LocalLimiter(),
        body_encoding=encoding,
        transport=transport,
    ) as client:
        jane = await client.customers.get(7)
        await client.customers.update(7, attrs.evolve(jane, city="Bergen"))
        await client.customers.update(7, {"city": "Bergen", **jane.extra})
        await client.customers.create(jane)
        await client.customers.bulk_update([(7, jane)], raise_on_error=True)
        # A plain str is the caller's own: it is sent as given.
        await client.customers.update(7, {"password": "n3w-Passw0rd", "token": "fresh-token"})
        await client.users.create({"username": "bob", "password": "hunter2", "pin": 4321})
        await client.customers.update(
            7, Customer(account="Jane", extra={"password": "from-a-model"})
        )
    *echoes, plain, new_user, from_model = [sent_fields(w) for w in writes]
    assert len(echoes) == 4
    for sent in echoes:
        assert sent["tier"] == "gold"  # other unknown fields still go back
        assert not set(CUSTOMER_SECRETS) & set(sent)
        assert_no_secret_in(str(sent))
        assert "item-token" not in str(sent)
        assert MASK not in str(sent)
        assert "%2A%2A" not in str(sent)
    assert (plain["password"], plain["token"]) == ("n3w-Passw0rd", "fresh-token")
    pin = 4321 if encoding == "json" else "4321"
    assert (new_user["password"], new_user["pin"]) == ("hunter2", pin)
    assert from_model["password"] == "from-a-model"


async def test_a_sync_sends_a_new_password_but_never_the_servers_hash(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await make_sandbox()
    sandbox.seed(
        "customers",
        [
            {"account": "Jane", "email": "jane@example.com", "city": "Oslo", **CUSTOMER_SECRETS},
            {"account": "Ola", "email": "ola@example.com", "city": "Oslo", **CUSTOMER_SECRETS},
        ],
    )
    client = make_client(sandbox)
    remote = await client.customers.list().collect()
    # The server's own records, sent back: nothing to change.
    result = await client.customers.sync(remote, key="email")
    assert [o.status for o in result.outcomes] == ["unchanged", "unchanged"]
    # Edited: only the edit is sent, never the hash.
    edited = [attrs.evolve(m, city="Bergen") for m in remote]
    result = await client.customers.sync(edited, key="email")
    assert [o.status for o in result.outcomes] == ["updated", "updated"]
    assert [o.changes for o in result.outcomes] == [{"city": "Bergen"}] * 2
    # A secret the server holds cannot be compared with the input (a hash never equals
    # the password): a sync leaves it alone, so an unchanged nightly input plans nothing.
    plan = await client.customers.sync(
        [
            {"email": "jane@example.com", "password": "n3w-Passw0rd", "city": "Bergen"},
            {"email": "ola@example.com", "token": "another-token", "city": "Bergen"},
        ],
        key="email",
        dry_run=True,
    )
    assert [c.action for c in plan.changes] == ["unchanged", "unchanged"]
    # A record whose secret is empty on the server gets it; the plan's repr masks it.
    sandbox.seed("customers", [{"account": "Kari", "email": "kari@example.com", "city": "Oslo"}])
    plan = await client.customers.sync(
        [{"email": "kari@example.com", "password": "n3w-Passw0rd"}], key="email", dry_run=True
    )
    assert [c.action for c in plan.changes] == ["update"]
    assert plan.changes[0].changes == {"password": "n3w-Passw0rd"}
    assert "n3w-Passw0rd" not in repr(plan)
    assert "n3w-Passw0rd" not in repr(plan.changes[0])
    for stored in sandbox.records("customers"):
        if stored["email"] != "kari@example.com":
            assert stored["password"] == CUSTOMER_SECRETS["password"]


# -- the API key: scrubbed before any text is cut ----------------------------------------

KEY_CHARS = string.ascii_letters + string.digits
# Filler the key is never made of: ASCII and multi-byte characters (1 to 3 bytes), so
# byte offsets and character offsets differ.
FILLER = "ü-€ .漢;é:"
NOW = 1_700_000_000.0

Where = Literal[
    "message", "message_list", "errors_value", "errors_list", "errors_key", "html",
    "plain_500", "error_at_200", "success_message",
]  # fmt: skip
PLACES: tuple[Where, ...] = Where.__args__  # type: ignore[attr-defined]


def filler(length: int) -> str:
    return (FILLER * (length // len(FILLER) + 1))[:length]


def answer(where: Where, status: int, text: str) -> RawResponse:
    """A server's failure that quotes ``text`` (which may hold the key) at ``where``."""
    html_page = f"<html><body><h1>Error</h1><p>{text}</p></body></html>".encode()
    bodies: dict[Where, tuple[int, object]] = {
        "message": (status, {"success": False, "message": text}),
        "message_list": (200, {"error": True, "message": ["Invalid Date", text]}),
        "errors_value": (status, {"success": False, "message": "no", "errors": {"a": text}}),
        "errors_list": (status, {"success": False, "errors": ["first", [text, "x"]]}),
        "errors_key": (status, {"success": False, "errors": {text: "is wrong"}}),
        "html": (status, html_page),
        "plain_500": (500, text.encode()),
        "error_at_200": (200, {"error": True, "message": text}),
        "success_message": (200, {"success": True, "message": text, "data": {}}),
    }
    code, body = bodies[where]
    if isinstance(body, bytes):
        return RawResponse(code, {"Content-Type": "text/html"}, body)
    return json_response(body, code)


def everything_shown(
    where: Where, status: int, text: str, key: str, auth: Literal["bearer", "query"]
) -> str:
    """Every text a failed call shows: its error, its log records and its events."""
    events: list[Event] = []
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    def handler(request: Request) -> RawResponse:
        return answer(where, status, text)

    async def call() -> CloudOnexError:
        async with Client(
            base_url="https://crm.example.com",
            api_key=key,
            auth=auth,
            transport=MockTransport(handler),
            limiter=LocalLimiter(clock=FakeClock(NOW)),
            retry=RetryPolicy(attempts=2, backoff_base=0.0, backoff_max=0.0),
            max_wait=0.0,
            event_hooks=[events.append],
        ) as client:
            try:
                if where == "success_message":
                    await client.customers.create({"account": "A"})
                else:
                    await client.customers.get(7)
            except CloudOnexError as error:
                return error
        raise AssertionError("the call did not fail")

    logger = logging.getLogger("cloudonex_async")
    keep, level = Keep(logging.DEBUG), logger.level
    logger.addHandler(keep)
    logger.setLevel(logging.DEBUG)
    try:
        error = asyncio.run(call())
    finally:
        logger.removeHandler(keep)
        logger.setLevel(level)
    formatter = logging.Formatter("%(message)s")
    shown = [
        str(error),
        repr(error),
        repr(vars(error)),
        "".join(traceback.format_exception(type(error), error, error.__traceback__)),
        *(formatter.format(r) for r in records),  # with any exc_info text
        *(repr(e) for e in events),
    ]
    return "\n".join(shown)


def runs_of(key: str, size: int = 8) -> set[str]:
    return {key[i : i + size] for i in range(len(key) - size + 1)}


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    key=st.text(KEY_CHARS, min_size=20, max_size=64),
    where=st.sampled_from(PLACES),
    status=st.sampled_from([400, 401, 403, 404, 422, 429, 500, 503]),
    before=st.integers(0, 1200),
    after=st.integers(0, 600),
    auth=st.sampled_from(["bearer", "query"]),
)
@example(
    key="K" * 7 + "e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4",  # 40 characters, at 480: the old leak
    where="message", status=400, before=480, after=100, auth="bearer",
)  # fmt: skip
@example(
    key="Zq9" * 14, where="html", status=500, before=170, after=0, auth="query",
)  # fmt: skip
def test_no_run_of_the_key_survives_in_any_error_log_or_event(
    caplog: pytest.LogCaptureFixture,
    key: str,
    where: Where,
    status: int,
    before: int,
    after: int,
    auth: Literal["bearer", "query"],
) -> None:
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="cloudonex_async"):
        echoed = everything_shown(where, status, filler(before) + key + filler(after), key, auth)
        # The same failure without the key: what the library itself says anyway.
        quiet = everything_shown(where, status, filler(before + after), key, auth)
        captured = "\n".join(caplog.handler.format(r) for r in caplog.records)
    noise = quiet + "<redacted>"
    leaked = sorted(run for run in runs_of(key) if run in echoed + captured and run not in noise)
    assert not leaked, f"runs of the key shown: {leaked[:3]}"


def test_a_key_the_server_cut_at_the_end_of_its_message_is_scrubbed_too() -> None:
    key = "Ab3dEf6hIj9lMn2pQr5tUv8xYz1bCd4fGh7jKl0n"
    for cut in (8, 20, 39):
        shown = everything_shown("message", 400, f"bad key {key[:cut]}", key, "bearer")
        assert not [run for run in runs_of(key) if run in shown]
    # A key with a slash, JSON-escaped as PHP writes it, in a page that is not JSON.
    slashed = key.replace("n", "/")
    escaped = slashed.replace("/", "\\/")
    shown = everything_shown("html", 400, f"key={escaped}", slashed, "bearer")
    assert not [run for run in runs_of(escaped) | runs_of(slashed) if run in shown]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    key=st.text(KEY_CHARS, min_size=20, max_size=64),
    where=st.sampled_from(PLACES),
    start=st.integers(0, 56),
    length=st.integers(8, 64),
    before=st.integers(0, 800),
    after=st.integers(0, 400),
)
@example(  # a quoted part of the key mid-message, as a server's "truncated" notice does
    key="AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcd",
    where="message", start=0, length=12, before=8, after=30,
)  # fmt: skip
def test_no_piece_of_the_key_survives_anywhere_in_a_text(
    key: str, where: Where, start: int, length: int, before: int, after: int
) -> None:
    piece = key[start : start + length]
    if len(piece) < 8:
        piece = key[-8:]
    shown = everything_shown(where, 400, filler(before) + piece + filler(after), key, "bearer")
    quiet = everything_shown(where, 400, filler(before + after), key, "bearer")
    leaked = sorted(run for run in runs_of(piece) if run in shown and run not in quiet)
    assert not leaked, f"runs of the key shown: {leaked[:3]}"
