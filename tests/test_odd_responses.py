"""Answers the sandbox does not give, from aioresponses: shipped servers' shapes."""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import ClientResponse
from aioresponses import aioresponses
from aioresponses import core as aioresponses_core

from cloudonex_async import (
    Client,
    ConfigurationError,
    LocalLimiter,
    NotFoundError,
    RateLimitError,
    ResponseParseError,
    RetryPolicy,
    ValidationError,
)

BASE = "https://crm.example.com"
CUSTOMERS = re.compile(r"^https://crm\.example\.com/api/v2/customers.*$")


class _CompatResponse(ClientResponse):
    """aioresponses 0.7.9 builds responses without aiohttp 3.14's ``stream_writer``.

    Upstream: pnuckowski/aioresponses#289. Supply a stand-in until a release fixes it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if "stream_writer" in inspect.signature(ClientResponse.__init__).parameters:
            kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
        super().__init__(*args, **kwargs)


@pytest.fixture
def mocked(monkeypatch: pytest.MonkeyPatch) -> Iterator[aioresponses]:
    monkeypatch.setattr(aioresponses_core, "ClientResponse", _CompatResponse)
    with aioresponses() as mock:
        yield mock


@pytest_asyncio.fixture
async def client() -> AsyncIterator[Client]:
    async with Client(
        base_url=BASE,
        api_key="k",
        limiter=LocalLimiter(),
        retry=RetryPolicy(attempts=1),
    ) as client:
        yield client


async def test_a_legacy_create_answer_gives_the_model_with_its_new_id(
    mocked: aioresponses,
) -> None:
    mocked.post(
        CUSTOMERS, payload={"error": False, "contact_id": "12", "message": "Account Created"}
    )
    async with Client(
        base_url=BASE, api_key="k", limiter=LocalLimiter(), body_encoding="form"
    ) as client:
        customer = await client.customers.create({"account": "Jane", "email": "jane@example.com"})
    assert customer.id == 12
    assert customer.account == "Jane"


async def test_a_legacy_create_answer_to_a_json_body_is_an_ignored_body(
    mocked: aioresponses, client: Client
) -> None:
    # Only shipped 4.x code answers this way, and it never reads a JSON body.
    mocked.post(
        CUSTOMERS, payload={"error": False, "contact_id": "12", "message": "Account Created"}
    )
    with pytest.raises(ConfigurationError, match="body_encoding='form'"):
        await client.customers.create({"account": "Jane", "email": "jane@example.com"})


async def test_legacy_failures_at_200_raise(mocked: aioresponses, client: Client) -> None:
    mocked.post(
        CUSTOMERS, payload={"error": True, "message": ["Invalid Date", "Date Parsing Error"]}
    )
    with pytest.raises(ValidationError) as info:
        await client.customers.create({"account": "x"})
    assert info.value.status == 200
    assert list(info.value.errors.values()) == ["Invalid Date", "Date Parsing Error"]
    mocked.get(CUSTOMERS, payload={"error": True, "message": "Customer not found!"})
    with pytest.raises(NotFoundError):
        await client.customers.get(5)


async def test_numbers_strings_and_three_date_formats_are_read(
    mocked: aioresponses, client: Client
) -> None:
    mocked.get(
        CUSTOMERS,
        body=(
            b'[{"id": "7", "account": "A", "created_at": "2024-01-02T03:04:05Z"},'
            b' {"id": 8, "account": "B", "created_at": "2024-01-02 03:04:05", "zip": 12345},'
            b' {"id": 9, "account": null, "created_at": "2024-01-02T03:04:05.000000Z"}]'
        ),
        content_type="application/json",
    )
    customers = await client.customers.list().collect()  # a bare array: every row at once
    assert [c.id for c in customers] == [7, 8, 9]
    assert customers[0].created_at is not None
    assert customers[0].created_at.tzinfo is not None
    assert customers[1].zip == "12345"
    assert customers[2].account is None


async def test_money_as_json_numbers_never_passes_through_float(
    mocked: aioresponses, client: Client
) -> None:
    mocked.get(
        re.compile(r"^https://crm\.example\.com/api/v2/invoices/3$"),
        body=b'{"success": true, "data": {"id": 3, "amount": 1500.10, '
        b'"items": [{"amount": 0.1, "qty": 3}]}}',
        content_type="application/json",
    )
    invoice = await client.invoices.get(3)
    assert invoice.amount == Decimal("1500.10")
    assert invoice.items is not None
    assert invoice.items[0].amount == Decimal("0.1")


async def test_a_php_warning_before_the_json_is_read_past_and_logged(
    mocked: aioresponses, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    mocked.get(
        CUSTOMERS,
        body=b'<br /><b>Warning</b>: Undefined index in api.php {"success": true, "data": []}',
        content_type="application/json",
    )
    with caplog.at_level(logging.WARNING, logger="cloudonex_async"):
        assert await client.customers.list().collect() == []
    assert "PHP warning" in caplog.text


async def test_a_php_warning_with_a_cut_answer_still_raises(
    mocked: aioresponses, client: Client
) -> None:
    mocked.get(
        CUSTOMERS,
        body=b'<br /><b>Warning</b>: Undefined index in api.php {"success": true, "da',
        content_type="application/json",
    )
    with pytest.raises(ResponseParseError, match="Warning"):
        await client.customers.list().collect()


async def test_a_429_without_budget_headers_still_carries_retry_after(
    mocked: aioresponses, client: Client
) -> None:
    mocked.get(CUSTOMERS, status=429, headers={"Retry-After": "120"}, payload={"message": "Slow"})
    with pytest.raises(RateLimitError) as info:
        await client.customers.get(1)
    assert info.value.retry_after == 120
    assert client.rate_limit.rate_limited == 1
