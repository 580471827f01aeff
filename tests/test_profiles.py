"""Real installs: the shipped 4.x behaviour, the documented API, and profile="auto".

Every scenario runs over loopback against the sandbox in the style it names, and checks
the sandbox's stored state: an operation either did the right thing or raised the
documented error, and never returned a wrong record.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from typing import Any

import pytest

from cloudonex_async import (
    Client,
    ConfigurationError,
    CreatedWithoutIdError,
    Customer,
    Invoice,
    LocalLimiter,
    NotFoundError,
    RateLimitError,
    ResponseParseError,
    RouteNotFoundError,
    UnsupportedError,
    ValidationError,
)
from cloudonex_async._shipped import as_stored_text, sanitize_text, unescape_text
from cloudonex_async.testing import SandboxServer

from .conftest import ClientFactory, SandboxFactory

JANE = {"account": "Jane Doe", "email": "jane@example.com", "phone": "1234567890"}
ITEMS = [{"description": "Product A", "amount": "100.00", "qty": 1}]


async def shipped_sandbox(make_sandbox: SandboxFactory, rewriting: bool) -> SandboxServer:
    """A shipped-style sandbox holding 50 old invoices, so a wrong invoice id is near."""
    sandbox = await make_sandbox(style="shipped", url_rewriting=rewriting)
    owner = sandbox.seed("customers", [{"account": "Old Owner"}])[0]
    sandbox.seed("invoices", [{"userid": owner, "total": f"{n}.00"} for n in range(1, 51)])
    return sandbox


@pytest.mark.parametrize("rewriting", [False, True], ids=["no-rewriting", "rewriting"])
@pytest.mark.parametrize("profile", ["shipped", "auto"])
async def test_foundation_scenario_on_shipped_code(
    make_sandbox: SandboxFactory, make_client: ClientFactory, profile: str, rewriting: bool
) -> None:
    sandbox = await shipped_sandbox(make_sandbox, rewriting)
    client = make_client(sandbox, profile=profile)

    jane = await client.customers.create(JANE)
    stored = sandbox.store["customers"][jane.id or 0]
    assert (stored["account"], stored["email"], stored["phone"]) == (
        "Jane Doe",
        "jane@example.com",
        "1234567890",
    )
    assert isinstance(jane, Customer)
    assert jane.account == "Jane Doe"
    assert len(jane.extra) > 50  # the vendor's other columns are kept

    fetched = await client.customers.get(jane.id or 0)
    assert (fetched.id, fetched.email) == (jane.id, "jane@example.com")

    with pytest.raises(UnsupportedError) as refused:
        await client.customers.update(jane.id or 0, {"phone": "5550100"})
    assert refused.value.profile == "shipped"
    assert "customer" in str(refused.value)
    assert sandbox.store["customers"][jane.id or 0]["phone"] == "1234567890"

    invoices_before = set(sandbox.store["invoices"])
    with pytest.raises(CreatedWithoutIdError) as created:
        await client.invoices.create({"customer_id": jane.id, "items": ITEMS})
    [new_invoice] = set(sandbox.store["invoices"]) - invoices_before
    # The answer named the last item's id, which is another invoice's id here.
    assert created.value.reported_id in sandbox.store["invoice_items"]
    assert created.value.reported_id in sandbox.store["invoices"]
    assert created.value.reported_id != new_invoice
    assert "Do not create it again" in str(created.value)
    items = [i for i in sandbox.records("invoice_items") if i["invoiceid"] == new_invoice]
    assert [(i["description"], i["amount"], i["itemcode"]) for i in items] == [
        ("Product A", "100.00", "")
    ]
    row = sandbox.store["invoices"][new_invoice]
    assert (row["userid"], row["total"], row["r"]) == (jane.id, "100.00", "0")

    invoice = await client.invoices.get(new_invoice)
    assert isinstance(invoice, Invoice)
    assert (invoice.id, invoice.customer_id, invoice.amount) == (
        new_invoice,
        jane.id,
        Decimal("100.00"),
    )
    assert invoice.invoice_number == f"INV-{new_invoice:05d}"
    assert invoice.items is not None
    assert [(i.description, i.amount, i.qty) for i in invoice.items] == [
        ("Product A", Decimal("100.00"), Decimal(1))
    ]
    assert invoice.extra["subtotal"] == "100.00"  # unmapped vendor columns are kept

    paid = await client.invoices.update(new_invoice, {"status": "Paid"})
    assert paid.status == "Paid"
    assert sandbox.store["invoices"][new_invoice]["status"] == "Paid"
    sent = len(sandbox.requests)
    with pytest.raises(UnsupportedError, match="only an invoice's status"):
        await client.invoices.update(new_invoice, {"notes": "x"})
    assert len(sandbox.requests) == sent  # refused before sending

    listed = [c.id async for c in client.customers.list()]
    assert jane.id in listed
    assert sandbox.count("list", "customers") == 1  # one answer holds every record

    with pytest.raises(UnsupportedError) as no_listing:
        await client.invoices.list().collect()
    assert no_listing.value.resource == "invoices"

    with pytest.raises(UnsupportedError):
        await client.invoices.delete(new_invoice)
    assert new_invoice in sandbox.store["invoices"]
    with pytest.raises(UnsupportedError):
        await client.customers.delete(jane.id or 0)
    assert jane.id in sandbox.store["customers"]


async def test_auto_against_the_documented_api_runs_the_foundation_scenario(
    sandbox: SandboxServer, make_client: ClientFactory
) -> None:
    client = make_client(sandbox, profile="auto")
    jane = await client.customers.create(JANE)
    assert (await client.customers.get(jane.id or 0)).email == "jane@example.com"
    updated = await client.customers.update(jane.id or 0, {"phone": "5550100"})
    assert updated.phone == "5550100"
    assert sandbox.store["customers"][jane.id or 0]["phone"] == "5550100"
    invoice = await client.invoices.create({"customer_id": jane.id, "items": ITEMS})
    assert invoice.amount == Decimal("100.00")
    assert [c.id async for c in client.customers.list()] == [jane.id]
    await client.invoices.delete(invoice.id or 0)
    await client.customers.delete(jane.id or 0)
    assert sandbox.records("customers") == sandbox.records("invoices") == []
    assert (await client.server_profile()).name == "documented"


async def test_auto_probes_once_through_ng_and_logs_its_decision_once(
    make_sandbox: SandboxFactory,
    make_client: ClientFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sandbox = await shipped_sandbox(make_sandbox, rewriting=False)
    client = make_client(sandbox, profile="auto")
    caplog.set_level(logging.INFO, logger="cloudonex_async")
    await asyncio.gather(*(client.customers.list().collect() for _ in range(5)))
    probes = [r for r in sandbox.requests if r.path == "/api/v2/ping"]
    assert len(probes) == 1
    assert sandbox.requests[0] is probes[0]
    decisions = [r for r in caplog.records if "answers like" in r.getMessage()]
    assert len(decisions) == 1
    assert decisions[0].levelno == logging.INFO
    assert "shipped" in decisions[0].getMessage()
    profile = await client.server_profile()
    assert (profile.name, profile.body_encoding, profile.route_style, profile.item_paths) == (
        "shipped",
        "form",
        "ng",
        "singular",
    )


@pytest.mark.parametrize(
    "options",
    [
        {"route_style": "ng", "item_paths": "singular"},
        {"route_style": "ng", "item_paths": "singular", "body_encoding": "json"},
    ],
    ids=["documented-defaults", "explicit-json"],
)
async def test_a_json_client_against_shipped_code_points_to_form_bodies(
    make_sandbox: SandboxFactory, make_client: ClientFactory, options: dict[str, Any]
) -> None:
    sandbox = await shipped_sandbox(make_sandbox, rewriting=False)
    client = make_client(sandbox, **options)
    invoices_before = sandbox.records("invoices")
    with pytest.raises(ValidationError, match="body_encoding='form'"):
        await client.customers.create(JANE)
    with pytest.raises(ValidationError, match="body_encoding='form'"):
        await client.invoices.create({"customer_id": 1, "items": ITEMS})
    assert [c["account"] for c in sandbox.records("customers")] == ["Old Owner"]
    assert sandbox.records("invoices") == invoices_before
    assert sandbox.records("invoice_items") == []


async def test_the_shipped_profile_refuses_json_bodies_before_sending(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await shipped_sandbox(make_sandbox, rewriting=False)
    with pytest.raises(ConfigurationError, match="body_encoding='form'"):
        Client(base_url=sandbox.base_url, api_key="k", profile="shipped", body_encoding="json")
    client = make_client(sandbox, profile="auto", body_encoding="json")
    with pytest.raises(ConfigurationError, match="body_encoding='form'"):
        await client.users.create({"username": "bob", "password": "pw", "user_type": "2"})
    assert sandbox.records("users") == []
    assert [r.path for r in sandbox.requests] == ["/api/v2/ping"]


async def test_a_json_user_create_that_the_server_ignores_is_never_a_silent_success(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await make_sandbox(style="shipped")
    client = make_client(sandbox, route_style="ng", item_paths="singular")
    with pytest.raises(ConfigurationError, match="body_encoding='form'") as info:
        await client.users.create({"username": "bob", "fullname": "Bob", "password": "pw"})
    assert "remove that record" in str(info.value)
    # What the vendor code did with the ignored body, and what the error reported:
    [user] = sandbox.records("users")
    assert (user["username"], user["user_type"]) == ("", "Admin")
    assert "'user_id': '1'" in str(info.value)


@pytest.mark.parametrize("style", ["documented", "shipped"])
async def test_an_html_404_is_never_a_deleted_record(
    make_sandbox: SandboxFactory, make_client: ClientFactory, style: str
) -> None:
    sandbox = await make_sandbox(style=style, url_rewriting=False)
    [record_id] = sandbox.seed("customers", [{"account": "Still here"}])
    client = make_client(sandbox)  # the documented default: /api/v2/... paths
    result = await client.customers.bulk_delete([record_id])
    [outcome] = result.outcomes
    assert outcome.status == "failed"
    assert isinstance(outcome.error, RouteNotFoundError)
    assert not isinstance(outcome.error, NotFoundError)
    assert "route_style='ng'" in str(outcome.error)
    assert record_id in sandbox.store["customers"]
    with pytest.raises(RouteNotFoundError):
        await client.customers.get(record_id)


async def test_an_ignored_delete_is_never_a_deleted_record(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await make_sandbox(style="shipped")
    ids = sandbox.seed("customers", [{"account": "A"}, {"account": "B"}])
    client = make_client(sandbox, profile="shipped")
    result = await client.customers.bulk_delete(ids)
    assert [o.status for o in result.outcomes] == ["failed", "failed"]
    assert all(isinstance(o.error, UnsupportedError) for o in result.outcomes)
    assert sorted(sandbox.store["customers"]) == ids


async def test_get_refuses_a_list_and_a_record_with_another_id(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await make_sandbox(style="shipped", url_rewriting=True)
    [only] = sandbox.seed("customers", [{"account": "The only one"}])
    client = make_client(sandbox)  # documented paths: customers/<id> ignores the id
    with pytest.raises(ResponseParseError, match="a list where one Customer"):
        await client.customers.get(only)
    with pytest.raises(ResponseParseError, match="a list where one Customer"):
        await client.customers.get(only + 41)
    with pytest.raises(ResponseParseError, match="customer record where a transaction"):
        await client.transactions.list().collect()


async def test_shipped_invoice_creates_never_leave_an_invoice_without_items(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await shipped_sandbox(make_sandbox, rewriting=False)
    client = make_client(sandbox, profile="shipped")
    owner = sandbox.seed("customers", [{"account": "Owner"}])[0]
    before = set(sandbox.store["invoices"])
    with pytest.raises(ValidationError, match="at least one item"):
        await client.invoices.create({"customer_id": owner, "items": []})
    with pytest.raises(ValidationError, match="0, 3, 5, 7"):
        await client.invoices.create(
            {"customer_id": owner, "date": "2024-01-01", "due_date": "2024-01-09", "items": ITEMS}
        )
    assert set(sandbox.store["invoices"]) == before  # nothing sent for either
    records = [
        {"customer_id": owner, "date": "2024-01-01", "due_date": "2024-01-31", "items": ITEMS},
        {"customer_id": owner, "items": [{"description": "B", "amount": "2.50", "qty": 2}] * 3},
    ]
    result = await client.invoices.bulk_create(records)
    assert [o.status for o in result.outcomes] == ["created", "created"]
    assert [o.record_id for o in result.outcomes] == [None, None]
    assert all(isinstance(o.error, CreatedWithoutIdError) for o in result.outcomes)
    new = sorted(set(sandbox.store["invoices"]) - before)
    assert len(new) == 2
    counts = [sum(1 for i in sandbox.records("invoice_items") if i["invoiceid"] == n) for n in new]
    assert counts == [1, 3]
    first = sandbox.store["invoices"][new[0]]
    assert (first["date"], first["duedate"]) == ("2024-01-01", "2024-01-31")
    assert sandbox.store["invoices"][new[1]]["total"] == "15.00"


async def test_without_budget_headers_the_configured_budget_holds(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await make_sandbox(style="shipped")
    client = make_client(
        sandbox, profile="shipped", limiter=LocalLimiter(rate_limit=3, rate_period=3600)
    )
    for _ in range(3):
        await client.customers.list().collect()
    with pytest.raises(RateLimitError, match="max_wait"):
        await client.request("GET", "customers", max_wait=0)
    assert client.rate_limit.remaining == 0


async def test_the_sandbox_reads_php_style_form_bodies_in_both_styles(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    documented = await make_sandbox()
    client = make_client(documented, body_encoding="form")
    jane = await client.customers.create(JANE)
    invoice = await client.invoices.create(
        {
            "customer_id": jane.id,
            "items": [*ITEMS, {"description": "B", "amount": "0.10", "qty": 3}],
        }
    )
    assert invoice.amount == Decimal("100.30")
    stored = documented.store["invoices"][invoice.id or 0]
    assert stored["items"] == [
        {"description": "Product A", "amount": Decimal("100.00"), "qty": Decimal(1)},
        {"description": "B", "amount": Decimal("0.10"), "qty": Decimal(3)},
    ]
    shipped = await shipped_sandbox(make_sandbox, rewriting=False)
    client = make_client(shipped, profile="shipped")
    owner = (await client.customers.create(JANE)).id
    with pytest.raises(CreatedWithoutIdError):
        await client.invoices.create({"customer_id": owner, "items": ITEMS * 2})
    assert len(shipped.records("invoice_items")) == 2


async def test_a_json_users_bulk_create_never_reports_failed_for_what_the_server_created(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await make_sandbox(style="shipped")
    client = make_client(sandbox, route_style="ng", item_paths="singular")
    users = [{"username": f"u{n}", "fullname": f"U {n}", "password": "pw"} for n in range(5)]
    result = await client.users.bulk_create(users, retry_failed=True)
    created_on_server = len(sandbox.records("users"))
    assert created_on_server >= 1
    # What the server acted on is unknown (it created a user without the fields sent);
    # after that error the job sent nothing more, and those records failed for certain.
    assert len(result.unknown) == created_on_server
    assert all("body_encoding='form'" in str(o.error) for o in result.unknown)
    assert len(result.failed) == 5 - created_on_server
    assert all("not sent" in str(o.error) for o in result.failed)


TEXTS = ["Müller & Söhne", "5 > 3 <b>bold</b>", 'Say "hi" & <i>wave</i>', "AT&T, Smith & Co"]


async def test_text_round_trips_through_a_shipped_servers_html_sanitizer(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await make_sandbox(style="shipped")
    client = make_client(sandbox, profile="shipped")
    for text in TEXTS:
        created = await client.customers.create({"account": text, "address": f" {text} "})
        assert created.id is not None
        stored = sandbox.store["customers"][created.id]
        assert stored["account"] != text  # the server really escaped it
        fetched = await client.customers.get(created.id)
        assert fetched.account == text
        assert fetched.address == text  # trimmed by the server, as documented
    assert sandbox.store["customers"][1]["account"] == "Müller &amp; Söhne"
    listed = await client.customers.list().collect()
    assert sorted(c.account or "" for c in listed) == sorted(TEXTS)


async def test_an_unchanged_nightly_sync_plans_nothing_on_a_shipped_server(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await make_sandbox(style="shipped")
    client = make_client(sandbox, profile="shipped")
    rows = [
        {"account": text, "email": f"c{n}@example.com", "city": f" Köln {n} "}
        for n, text in enumerate([*TEXTS, "Müller <GmbH>"])
    ]
    first = await client.customers.sync(rows, key="email")
    assert {o.status for o in first.outcomes} == {"created"}
    assert sandbox.store["customers"][5]["account"] == "Müller"  # the unknown tag: gone
    for night in range(2):
        plan = await client.customers.sync(rows, key="email", dry_run=True)
        assert (plan.updates, plan.unchanged, plan.creates) == (0, len(rows), 0), night
        again = await client.customers.sync(rows, key="email")
        assert {o.status for o in again.outcomes} == {"unchanged"}


async def test_invoice_item_text_is_stored_and_read_exactly_as_sent_on_a_shipped_server(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await make_sandbox(style="shipped")
    client = make_client(sandbox, profile="shipped")
    owner = await client.customers.create({"account": "Owner & Co"})
    items = [{"description": "Widget & Co", "amount": "1.00"}, {"description": "a &amp; b"}]
    with pytest.raises(CreatedWithoutIdError):
        await client.invoices.create({"customer_id": owner.id, "items": items})
    [invoice_id] = sandbox.store["invoices"]
    descriptions = [str(i["description"]) for i in sandbox.records("invoice_items")]
    assert descriptions == ["Widget & Co", "a &amp; b"]
    invoice = await client.invoices.get(invoice_id)
    assert [i.description for i in invoice.items or []] == ["Widget & Co", "a &amp; b"]


@pytest.mark.parametrize(
    ("sent", "stored"),
    [  # as a running vendor server stored them
        ("Müller & Söhne", "Müller &amp; Söhne"),
        ("5 > 3", "5 &gt; 3"),
        ("<b>x</b>", "<b>x</b>"),
        ("Müller <GmbH>", "Müller"),
        ('Say "hi", Zoë', 'Say "hi", Zoë'),
    ],
)
async def test_the_shipped_sandbox_stores_text_as_the_vendors_sanitizer_does(
    make_sandbox: SandboxFactory, make_client: ClientFactory, sent: str, stored: str
) -> None:
    sandbox = await make_sandbox(style="shipped")
    client = make_client(sandbox, profile="shipped")
    created = await client.customers.create({"account": sent})
    assert sandbox.store["customers"][created.id or 0]["account"] == stored


def test_text_that_only_looks_like_an_entity_is_kept() -> None:
    assert sanitize_text("Terms&notes") == "Terms&amp;notes"
    assert unescape_text("Terms&amp;notes") == "Terms&notes"
    assert as_stored_text("AT&amp;T") == "AT&T"  # a whole entity is read, as the server does
