"""Answers the sandbox does not give, from the library's own MockTransport.

Shipped servers' shapes, money as JSON numbers, PHP warnings in front of JSON, a 429
without budget headers. The aiohttp layer itself is tested in ``test_transport.py``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from decimal import Decimal

import pytest
import pytest_asyncio

from cloudonex_async import (
    Client,
    ConfigurationError,
    LocalLimiter,
    NotFoundError,
    RateLimitError,
    RawResponse,
    Request,
    ResponseParseError,
    RetryPolicy,
    ValidationError,
)
from cloudonex_async.testing import MockTransport, json_response

Answers = dict[tuple[str, str], RawResponse]


def raw(body: bytes, status: int = 200) -> RawResponse:
    return RawResponse(status, {"Content-Type": "application/json"}, body)


def router(answers: Answers) -> Callable[[Request], RawResponse]:
    """Answer each (method, path) with its canned response."""

    def handler(request: Request) -> RawResponse:
        return answers[request.method, request.path]

    return handler


@pytest_asyncio.fixture
async def answers() -> AsyncIterator[Answers]:
    yield {}


@pytest_asyncio.fixture
async def client(answers: Answers) -> AsyncIterator[Client]:
    async with Client(
        base_url="https://crm.example.com",
        api_key="k",
        limiter=LocalLimiter(),
        retry=RetryPolicy(attempts=1),
        transport=MockTransport(router(answers)),
    ) as client:
        yield client


async def test_a_legacy_create_answer_gives_the_model_with_its_new_id(answers: Answers) -> None:
    answers["POST", "customers"] = json_response(
        {"error": False, "contact_id": "12", "message": "Account Created"}
    )
    transport = MockTransport(router(answers))
    async with Client(
        base_url="https://crm.example.com",
        api_key="k",
        limiter=LocalLimiter(),
        body_encoding="form",
        transport=transport,
    ) as client:
        customer = await client.customers.create({"account": "Jane", "email": "jane@example.com"})
    assert customer.id == 12
    assert customer.account == "Jane"
    [sent] = transport.requests
    assert sent.body == b"account=Jane&email=jane%40example.com"


async def test_a_legacy_create_answer_to_a_json_body_is_an_ignored_body(
    answers: Answers, client: Client
) -> None:
    # Only shipped 4.x code answers this way, and it never reads a JSON body.
    answers["POST", "customers"] = json_response(
        {"error": False, "contact_id": "12", "message": "Account Created"}
    )
    with pytest.raises(ConfigurationError, match="body_encoding='form'"):
        await client.customers.create({"account": "Jane", "email": "jane@example.com"})


async def test_legacy_failures_at_200_raise(answers: Answers, client: Client) -> None:
    answers["POST", "customers"] = json_response(
        {"error": True, "message": ["Invalid Date", "Date Parsing Error"]}
    )
    with pytest.raises(ValidationError) as info:
        await client.customers.create({"account": "x"})
    assert info.value.status == 200
    assert list(info.value.errors.values()) == ["Invalid Date", "Date Parsing Error"]
    answers["GET", "customers/5"] = json_response({"error": True, "message": "Customer not found!"})
    with pytest.raises(NotFoundError):
        await client.customers.get(5)


async def test_numbers_strings_and_three_date_formats_are_read(
    answers: Answers, client: Client
) -> None:
    answers["GET", "customers"] = raw(
        b'[{"id": "7", "account": "A", "created_at": "2024-01-02T03:04:05Z"},'
        b' {"id": 8, "account": "B", "created_at": "2024-01-02 03:04:05", "zip": 12345},'
        b' {"id": 9, "account": null, "created_at": "2024-01-02T03:04:05.000000Z"}]'
    )
    customers = await client.customers.list().collect()  # a bare array: every row at once
    assert [c.id for c in customers] == [7, 8, 9]
    assert customers[0].created_at is not None
    assert customers[0].created_at.tzinfo is not None
    assert customers[1].zip == "12345"
    assert customers[2].account is None


async def test_money_as_json_numbers_never_passes_through_float(
    answers: Answers, client: Client
) -> None:
    answers["GET", "invoices/3"] = raw(
        b'{"success": true, "data": {"id": 3, "amount": 1500.10, '
        b'"items": [{"amount": 0.1, "qty": 3}]}}'
    )
    invoice = await client.invoices.get(3)
    assert invoice.amount == Decimal("1500.10")
    assert invoice.items is not None
    assert invoice.items[0].amount == Decimal("0.1")


async def test_a_php_warning_before_the_json_is_read_past_and_logged(
    answers: Answers, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    answers["GET", "customers"] = raw(
        b'<br /><b>Warning</b>: Undefined index in api.php {"success": true, "data": []}'
    )
    with caplog.at_level(logging.WARNING, logger="cloudonex_async"):
        assert await client.customers.list().collect() == []
    assert "PHP warning" in caplog.text


async def test_a_php_warning_with_a_cut_answer_still_raises(
    answers: Answers, client: Client
) -> None:
    answers["GET", "customers"] = raw(
        b'<br /><b>Warning</b>: Undefined index in api.php {"success": true, "da'
    )
    with pytest.raises(ResponseParseError, match="Warning"):
        await client.customers.list().collect()


async def test_a_429_without_budget_headers_still_carries_retry_after(
    answers: Answers, client: Client
) -> None:
    answers["GET", "customers/1"] = json_response(
        {"message": "Slow"}, status=429, headers={"Retry-After": "120"}
    )
    with pytest.raises(RateLimitError) as info:
        await client.customers.get(1)
    assert info.value.retry_after == 120
    assert client.rate_limit.rate_limited == 1


async def test_a_handler_may_be_async_and_sees_the_request(answers: Answers) -> None:
    seen: list[Request] = []

    async def handler(request: Request) -> RawResponse:
        seen.append(request)
        return json_response({"success": True, "data": {"id": 4, "account": "Async"}})

    async with Client(
        base_url="https://crm.example.com",
        api_key="secret-key",
        auth="query",
        limiter=LocalLimiter(),
        transport=MockTransport(handler),
    ) as client:
        assert (await client.customers.get(4)).account == "Async"
    [request] = seen
    assert (request.method, request.path, request.resource) == ("GET", "customers/4", "customers")
    assert ("api_key", "secret-key") in request.params  # what the wire gets...
    assert "secret-key" not in request.display_url  # ...and what messages show
