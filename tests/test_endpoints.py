"""Users, the financial report and webhooks, against both sandbox styles."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest

from cloudonex_async import (
    FinancialReport,
    Secret,
    UnsupportedError,
    User,
    ValidationError,
    Webhook,
)

from .conftest import ClientFactory, SandboxFactory


async def test_users_on_the_documented_api(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await make_sandbox()
    client = make_client(sandbox)
    bob = await client.users.create(
        {"username": "bob", "fullname": "Bob Ross", "email": "bob@example.com", "password": "x"}
    )
    assert isinstance(bob, User)
    assert (bob.username, bob.fullname) == ("bob", "Bob Ross")
    assert "password" not in sandbox.store["users"][bob.id or 0]
    assert (await client.users.get(bob.id or 0)).email == "bob@example.com"
    assert [u.username async for u in client.users.list()] == ["bob"]
    with pytest.raises(ValidationError) as info:
        await client.users.create({"fullname": "No Name"})
    assert info.value.errors == {"username": "Username is required"}
    with pytest.raises(UnsupportedError, match="no update for users"):
        await client.users.update(bob.id or 0, {"fullname": "B"})
    with pytest.raises(UnsupportedError, match="no delete for users"):
        await client.users.delete(bob.id or 0)


async def test_users_on_shipped_code_never_show_their_secrets(
    make_sandbox: SandboxFactory, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox = await make_sandbox(style="shipped")
    client = make_client(sandbox, profile="shipped")
    caplog.set_level(logging.DEBUG)
    bob = await client.users.create(
        {"username": "bob", "fullname": "Bob Ross", "password": "hunter2", "user_type": "2"}
    )
    row = sandbox.store["users"][bob.id or 0]
    assert (row["username"], row["fullname"], row["roleid"]) == ("bob", "Bob Ross", "2")
    listed = await client.users.list().collect()
    fetched = await client.users.get(bob.id or 0)
    assert [u.username for u in listed] == ["bob"]
    secrets = [str(row[k]) for k in ("password", "autologin", "api_token")]
    assert isinstance(fetched.extra["password"], Secret)
    assert fetched.extra["password"].get_secret_value() == row["password"]  # kept, usable
    shown = [repr(fetched), str(fetched), repr(fetched.extra), repr(listed), str(listed)]
    shown += [r.getMessage() for r in caplog.records]
    for text in shown:
        for secret in secrets:
            assert secret not in text


@pytest.mark.parametrize("month", [1, 2])
async def test_the_financial_report_is_exact_money(
    make_sandbox: SandboxFactory, make_client: ClientFactory, month: int
) -> None:
    sandbox = await make_sandbox()
    client = make_client(sandbox)
    for kind, amount, day in [
        ("Income", "1500.10", "2024-01-15"),
        ("Income", "0.20", "2024-01-31"),
        ("Expense", "200.05", "2024-01-02"),
        ("Income", "99.00", "2024-02-01"),
    ]:
        await client.transactions.create({"type": kind, "amount": amount, "date": day})
    customer = await client.customers.create({"account": "Owes"})
    await client.invoices.create(
        {
            "customer_id": customer.id,
            "date": "2024-01-20",
            "items": [{"description": "A", "amount": "10.01", "qty": 3}],
        }
    )
    report = await client.reports.financial(year=2024, month=month)
    assert isinstance(report, FinancialReport)
    expected = {
        1: ("1500.30", "200.05", "1300.25", "30.03"),
        2: ("99.00", "0.00", "99.00", "0.00"),
    }[month]
    got = (report.income, report.expenses, report.profit, report.outstanding_invoices)
    assert tuple(str(v) for v in got) == expected
    assert all(isinstance(v, Decimal) for v in got)
    assert (report.year, report.month) == (2024, month)


async def test_webhooks_on_the_documented_api(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await make_sandbox()
    client = make_client(sandbox)
    hook = await client.webhooks.create(
        url="https://example.com/hook", events=["invoice.created", "invoice.paid"]
    )
    assert isinstance(hook, Webhook)
    assert hook.id == 1
    assert sandbox.store["webhooks"][1]["events"] == ["invoice.created", "invoice.paid"]
    with pytest.raises(ValidationError) as info:
        await client.webhooks.create(url="not a url", events=[])
    assert set(info.value.errors) == {"url", "events"}


@pytest.mark.parametrize("profile", ["shipped", "auto"])
async def test_reports_and_webhooks_are_unsupported_on_shipped_code(
    make_sandbox: SandboxFactory, make_client: ClientFactory, profile: str
) -> None:
    sandbox = await make_sandbox(style="shipped")
    client = make_client(sandbox, profile=profile)
    with pytest.raises(UnsupportedError) as report:
        await client.reports.financial(year=2024, month=1)
    assert (report.value.resource, report.value.profile) == ("reports", "shipped")
    with pytest.raises(UnsupportedError) as hook:
        await client.webhooks.create(url="https://example.com/h", events=["invoice.paid"])
    assert (hook.value.resource, hook.value.profile) == ("webhooks", "shipped")
    assert sandbox.records("webhooks") == []
