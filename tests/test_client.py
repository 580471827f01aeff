"""The public API against the sandbox over loopback HTTP: CRUD, auth, errors, secrecy."""

from __future__ import annotations

import contextlib
import logging
import traceback
from decimal import Decimal
from typing import Any, Literal

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from cloudonex_async import (
    AuthenticationError,
    Client,
    ConfigurationError,
    Customer,
    Invoice,
    Model,
    NotFoundError,
    OutcomeUnknownError,
    PermissionDeniedError,
    RequestTimeoutError,
    ResponseParseError,
    RetryPolicy,
    ServerError,
    TransportError,
    ValidationError,
)
from cloudonex_async.testing import SandboxServer
from cloudonex_async.testing._process import free_port
from cloudonex_async.testing._sandbox import FaultKind

from .conftest import ClientFactory, SandboxFactory

# A valid create body and a change for each resource; references are filled in per test.
CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "customers": (
        {"account": "Jane Doe", "email": "jane@example.com", "phone": "1234567890"},
        {"phone": "5550100"},
    ),
    "invoices": (
        {
            "customer_id": "<customer>",
            "items": [{"description": "Product A", "amount": "100.00", "qty": 1}],
        },
        {"status": "Paid"},
    ),
    "transactions": (
        {
            "type": "Income",
            "account_id": 1,
            "amount": "1500.00",
            "description": "Sale",
            "date": "2024-01-15",
        },
        {"description": "Sale of goods"},
    ),
    "quotes": (
        {
            "customer_id": "<customer>",
            "valid_until": "2024-02-15",
            "items": [{"description": "Consulting", "amount": "250.00", "qty": 2}],
        },
        {"status": "Sent"},
    ),
    "products": (
        {
            "name": "Widget",
            "price": "19.99",
            "description": "A widget",
            "type": "service",
            "tax_rate": "7.5",
        },
        {"price": "21.00"},
    ),
    "orders": (
        {"ordernum": "ORD-1", "customer_id": "<customer>", "status": "Pending", "amount": "10.00"},
        {"status": "Active"},
    ),
    "leads": (
        {
            "first_name": "Ada",
            "last_name": "Lovelace",
            "email": "ada@example.com",
            "company": "AE",
            "phone": "1",
            "source": "Website",
        },
        {"company": "Analytical Engines"},
    ),
    "suppliers": (
        {"account": "Acme Supplies", "email": "sales@acme.example"},
        {"city": "Springfield"},
    ),
    "purchases": (
        {
            "supplier_id": "<supplier>",
            "items": [{"description": "Paper", "amount": "3.50", "qty": 10}],
        },
        {"status": "Received"},
    ),
    "tickets": (
        {
            "customer_id": "<customer>",
            "subject": "Login issue",
            "message": "Cannot log in",
            "department_id": 1,
            "priority": "High",
        },
        {"status": "Closed"},
    ),
}
CHANGED_FIELD = {
    "customers": "phone",
    "invoices": "status",
    "transactions": "description",
    "quotes": "status",
    "products": "price",
    "orders": "status",
    "leads": "company",
    "suppliers": "city",
    "purchases": "status",
    "tickets": "status",
}


@pytest.mark.parametrize("resource", sorted(CASES))
async def test_every_resource_round_trips_create_get_update_list_delete(
    client: Client, resource: str
) -> None:
    customer = await client.customers.create({"account": "Owner"})
    supplier = await client.suppliers.create({"account": "Vendor"})
    refs = {"<customer>": customer.id, "<supplier>": supplier.id}
    body, change = CASES[resource]
    body = {k: refs.get(v, v) if isinstance(v, str) else v for k, v in body.items()}
    api = getattr(client, resource)

    created = await api.create(body)
    assert isinstance(created, api.model)
    assert isinstance(created.id, int)
    fetched = await api.get(created.id)
    assert fetched.id == created.id
    field = CHANGED_FIELD[resource]
    updated = await api.update(created.id, change)
    expected = change[field]
    got = getattr(updated, field)
    assert (got == Decimal(expected)) if isinstance(got, Decimal) else got == expected
    assert getattr(await api.get(created.id), field) == got
    listed = [record.id async for record in api.list()]
    assert created.id in listed
    await api.delete(created.id)
    with pytest.raises(NotFoundError):
        await api.get(created.id)


async def test_create_and_update_accept_models(client: Client) -> None:
    created = await client.customers.create(Customer(account="Model Person", email="m@example.com"))
    assert created.account == "Model Person"
    again = await client.customers.update(created.id or 0, created)
    assert again.email == "m@example.com"


async def test_invoice_money_stays_exact(client: Client) -> None:
    customer = await client.customers.create({"account": "Penny"})
    invoice = await client.invoices.create(
        {
            "customer_id": customer.id,
            "items": [
                {"description": "A", "amount": "0.10", "qty": 1},
                {"description": "B", "amount": Decimal("0.20"), "qty": 1},
            ],
        }
    )
    assert invoice.amount == Decimal("0.30")
    assert str(invoice.amount) == "0.30"
    assert isinstance(invoice, Invoice)
    assert invoice.items is not None
    assert [item.amount for item in invoice.items] == [Decimal("0.10"), Decimal("0.20")]
    fetched = await client.invoices.get(invoice.id or 0)
    assert str(fetched.amount) == "0.30"


async def test_unknown_fields_survive_a_get_update_round_trip(
    sandbox: SandboxServer, client: Client
) -> None:
    [record_id] = sandbox.seed(
        "customers", [{"account": "Future", "loyalty_tier": "gold", "tags": ["a", "b"]}]
    )
    customer = await client.customers.get(record_id)
    assert customer.extra["loyalty_tier"] == "gold"
    assert customer.extra["tags"] == ["a", "b"]
    updated = await client.customers.update(record_id, customer)
    assert updated.extra["loyalty_tier"] == "gold"
    stored = sandbox.store["customers"][record_id]
    assert stored["loyalty_tier"] == "gold"
    assert stored["tags"] == ["a", "b"]


async def test_low_level_request_returns_the_envelope_data(client: Client) -> None:
    await client.customers.create({"account": "Low Level"})
    data = await client.request("GET", "customers", params={"page": 1})
    assert isinstance(data, list)
    assert data[0]["account"] == "Low Level"  # type: ignore[index,call-overload]


# -- errors ----------------------------------------------------------------------------


async def test_invalid_email_is_a_validation_error_with_field_errors(client: Client) -> None:
    with pytest.raises(ValidationError) as info:
        await client.customers.create({"account": "Bad", "email": "not-an-email"})
    assert info.value.status == 400
    assert info.value.errors == {"email": "Invalid email format"}
    assert "Validation failed" in str(info.value)
    assert "email: Invalid email format" in str(info.value)


async def test_wrong_key_is_an_authentication_error_saying_what_to_do(
    sandbox: SandboxServer,
) -> None:
    async with Client(base_url=sandbox.base_url, api_key="wrong-key") as client:
        with pytest.raises(AuthenticationError) as info:
            await client.customers.get(1)
    assert info.value.status == 401
    assert "No valid API key provided." in str(info.value)
    assert "Settings" in str(info.value)


async def test_missing_record_is_not_found(client: Client) -> None:
    with pytest.raises(NotFoundError) as info:
        await client.customers.get(999)
    assert info.value.status == 404


@pytest.mark.parametrize(
    ("kind", "status", "cls", "quoted"),
    [
        ("html", 200, ResponseParseError, "Fatal error"),
        ("html", 500, ServerError, "Fatal error"),
        ("malformed", 200, ResponseParseError, '"acc'),
        ("empty", 200, ResponseParseError, "empty body"),
        ("error", 403, PermissionDeniedError, "Forbidden"),
    ],
)
async def test_broken_answers_raise_clear_errors(
    sandbox: SandboxServer,
    make_client: ClientFactory,
    kind: str,
    status: int,
    cls: type[Exception],
    quoted: str,
) -> None:
    client = make_client(sandbox, retry=RetryPolicy(attempts=1))
    sandbox.inject(kind, status=status)  # type: ignore[arg-type]
    with pytest.raises(cls) as info:
        await client.customers.list().collect()
    assert quoted in str(info.value)
    assert str(status) in str(info.value)


async def test_server_errors_on_get_are_retried_then_raised(
    sandbox: SandboxServer, make_client: ClientFactory
) -> None:
    client = make_client(sandbox)
    sandbox.inject("error", count=2, status=502)
    assert await client.customers.list().collect() == []
    sandbox.inject("error", count=4, status=500)
    with pytest.raises(ServerError) as info:
        await client.customers.list().collect()
    assert info.value.status == 500
    assert client.rate_limit.retries == 2 + 3


async def test_a_dropped_post_is_outcome_unknown_and_never_resent(
    sandbox: SandboxServer, make_client: ClientFactory
) -> None:
    client = make_client(sandbox)
    sandbox.inject("drop", after_processing=True)
    with pytest.raises(OutcomeUnknownError) as info:
        await client.customers.create({"account": "Maybe"})
    assert isinstance(info.value, TransportError)
    assert "may or may not exist" in str(info.value)
    assert sandbox.count("create") == 1
    assert len(sandbox.records("customers")) == 1


async def test_a_stalled_answer_times_out(
    sandbox: SandboxServer, make_client: ClientFactory
) -> None:
    sandbox.faults.stall_seconds = 5
    client = make_client(sandbox, timeout=0.2, retry=RetryPolicy(attempts=1))
    sandbox.inject("stall")
    with pytest.raises(RequestTimeoutError, match="timed out"):
        await client.customers.get(1)


async def test_connection_refused_is_a_transport_error(make_client: ClientFactory) -> None:
    ghost = SandboxServer(port=free_port())  # a port nothing listens on (never started)
    client = make_client(ghost, retry=RetryPolicy(attempts=2, backoff_base=0.001))
    with pytest.raises(TransportError) as info:
        await client.customers.get(1)
    assert info.value.request_sent is False
    assert "could not connect" in str(info.value)


# -- safety ----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["../settings", "1/../../settings", "1?x=2", "%2e%2e"])
async def test_ids_cannot_reach_another_path(
    sandbox: SandboxServer, client: Client, bad: str
) -> None:
    with pytest.raises(ConfigurationError):
        await client.customers.get(bad)
    assert sandbox.requests == []


async def test_numeric_string_ids_are_accepted(client: Client) -> None:
    created = await client.customers.create({"account": "Str"})
    assert (await client.customers.get(str(created.id))).id == created.id


@pytest.mark.parametrize("auth", ["bearer", "query"])
async def test_the_key_never_shows_in_reprs_errors_or_logs(
    make_sandbox: SandboxFactory,
    make_client: ClientFactory,
    caplog: pytest.LogCaptureFixture,
    auth: str,
) -> None:
    key = "KEY-4f9a1c7e-very-secret"
    sandbox = await make_sandbox(api_key=key)
    client = make_client(sandbox, auth=auth, retry=RetryPolicy(attempts=2, backoff_base=0.001))
    caplog.set_level(logging.DEBUG)
    seen: list[str] = [repr(client), str(client.config), repr(client.config)]
    await client.customers.create({"account": "A"})
    kinds: tuple[FaultKind, ...] = ("drop", "html", "error", "stall")
    for inject in kinds:
        sandbox.faults.stall_seconds = 2
        sandbox.inject(inject, count=2)
        client_fast = make_client(
            sandbox, auth=auth, timeout=0.2, retry=RetryPolicy(attempts=2, backoff_base=0.001)
        )
        for call in (client_fast.customers.get(1), client_fast.customers.create({"account": "B"})):
            try:
                await call
            except Exception as exc:  # every error class this can raise
                seen += [str(exc), repr(exc), str(exc.__cause__), repr(exc.__context__)]
                seen += traceback.format_exception(exc)
                seen += [str(v) for v in vars(exc).values()]
    with pytest.raises(ValidationError) as info:
        await client.customers.create({"account": "C", "email": "bad"})
    seen += [str(info.value), repr(info.value)]
    seen += [record.getMessage() for record in caplog.records]
    assert any("/customers" in text for text in seen)  # the checks below looked at something
    for text in seen:
        assert key not in text


async def test_plain_http_to_remote_host_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="https"):
        Client(base_url="http://crm.example.com", api_key="k")


async def test_key_and_url_come_from_the_environment(
    sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUDONEX_API_KEY", sandbox.api_key)
    monkeypatch.setenv("CLOUDONEX_BASE_URL", sandbox.base_url + "/api/v2/")
    async with Client() as client:
        assert await client.customers.list().collect() == []


async def test_missing_key_is_a_clear_error_at_construction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CLOUDONEX_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="CLOUDONEX_API_KEY"):
        Client(base_url="https://crm.example.com")


async def test_a_closed_client_refuses_work(sandbox: SandboxServer) -> None:
    client = Client(base_url=sandbox.base_url, api_key=sandbox.api_key)
    await client.customers.list().collect()
    await client.close()
    await client.close()  # idempotent
    assert client.closed
    with pytest.raises(ConfigurationError, match="closed"):
        await client.customers.get(1)


async def test_a_borrowed_session_is_left_open(sandbox: SandboxServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with Client(base_url=sandbox.base_url, api_key=sandbox.api_key, session=session) as c:
            await c.customers.list().collect()
        assert not session.closed


@pytest.mark.parametrize("borrowed", [False, True], ids=["owned", "borrowed"])
@pytest.mark.parametrize("auth", ["bearer", "query"])
async def test_every_request_carries_the_standard_headers(
    borrowed: bool, auth: Literal["bearer", "query"]
) -> None:
    seen: list[dict[str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response({"success": True, "data": {"id": 1}, "message": ""})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    async with TestServer(app, host="127.0.0.1") as server, contextlib.AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession()) if borrowed else None
        client = Client(
            base_url=str(server.make_url("/")),
            api_key="key-1",
            auth=auth,
            session=session,
            user_agent="tests/1",
        )
        await stack.enter_async_context(client)
        await client.request("GET", "customers")
        await client.request("POST", "customers", json={"account": "A"})
    for headers in seen:
        assert headers["Accept"] == "application/json"
        assert headers["User-Agent"] == "tests/1"
        if auth == "bearer":
            assert headers["Authorization"] == "Bearer key-1"
        else:
            assert "Authorization" not in headers
    assert "Content-Type" not in seen[0]
    assert seen[1]["Content-Type"] == "application/json"


async def test_models_read_nulls_numeric_strings_and_both_datetime_formats(
    sandbox: SandboxServer, client: Client
) -> None:
    [record_id] = sandbox.seed(
        "invoices",
        [
            {
                "customer_id": "12",
                "amount": "1,234.50",
                "date": None,
                "due_date": "2024-02-01",
                "created_at": "2024-01-01 10:00:00",
            }
        ],
    )
    invoice = await client.invoices.get(record_id)
    assert invoice.customer_id == 12
    assert invoice.amount == Decimal("1234.50")
    assert invoice.date is None
    assert invoice.due_date is not None
    assert invoice.due_date.isoformat() == "2024-02-01"
    assert invoice.created_at is not None
    assert invoice.created_at.tzinfo is None


async def test_plugin_fixtures_work(
    cloudonex_client: Client, cloudonex_sandbox: SandboxServer
) -> None:
    created = await cloudonex_client.customers.create({"account": "Plugin"})
    assert isinstance(created, Model)
    assert cloudonex_sandbox.count("create", "customers") == 1
