"""Anything the network can deliver, into every parser and through the response path.

Hypothesis feeds arbitrary and malformed statuses, headers, bodies and JSON shapes. Only
the library's own errors may come out (never a KeyError, TypeError, ValueError,
OverflowError, RecursionError, JSONDecodeError or UnicodeDecodeError), and every value
that comes out must be sane: finite, bounded, of the promised type.
"""

from __future__ import annotations

import asyncio
import json
import math
from datetime import date, datetime
from decimal import Decimal
from email.utils import formatdate
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cloudonex_async import (
    Client,
    CloudOnexError,
    Customer,
    Envelope,
    Invoice,
    LocalLimiter,
    Model,
    RawResponse,
    Request,
    RetryPolicy,
)
from cloudonex_async._convert import (
    CONVERTER,
    MAX_AMOUNT_CHARS,
    UnreadableValueError,
    make_converter,
)
from cloudonex_async._protocol import (
    DEFAULT_HORIZON,
    MAX_BUDGET,
    MAX_PAGES,
    MAX_RECORDS,
    Failure,
    RateLimitInfo,
    build_request,
    clock_skew,
    created_id,
    detect_profile,
    is_last_page,
    known_page_count,
    page_fingerprint,
    parse_response,
    parse_retry_after,
    read_page,
)
from cloudonex_async._shipped import invoice_from_shipped
from cloudonex_async.models import (
    FinancialReport,
    Lead,
    Order,
    Product,
    Purchase,
    Quote,
    Supplier,
    Ticket,
    Transaction,
    User,
    Webhook,
)
from cloudonex_async.testing import FakeClock, MockTransport

NOW = 1_700_000_000.0
LENIENT_CONVERTER = make_converter(lenient=True)
KEY = "KEY-hypothesis-3c1d"
MODELS: tuple[type[Model], ...] = (
    Customer,
    Invoice,
    Transaction,
    Quote,
    Product,
    Order,
    Lead,
    Supplier,
    Purchase,
    Ticket,
    User,
    FinancialReport,
    Webhook,
)

# -- strategies -------------------------------------------------------------------------

numbers_as_text = (
    st.sampled_from(
        [
            "0",
            "-1",
            "1",
            "999",
            " 42 ",
            "1e400",
            "-1e400",
            "inf",
            "-inf",
            "nan",
            "NaN",
            "",
            "1.5",
            "9" * 40,
            "0x10",
            "1_000",
            "\x00",
            "١٢",
        ]
    )
    | st.integers(-(10**30), 10**30).map(str)
    | st.floats().map(repr)
)
dates_as_text = st.sampled_from(
    [
        formatdate(NOW, usegmt=True),
        formatdate(0, usegmt=True),
        "Thu, 01 Jan 1970 00:00:00 GMT",
        "Sat, 01 Jan 2300 00:00:00 GMT",
        "Mon, 32 Foo 99999 99:99:99 GMT",
        "yesterday",
        "",
    ]
) | st.integers(0, 253_402_300_000).map(lambda s: formatdate(s, usegmt=True))
header_values = numbers_as_text | dates_as_text | st.text(max_size=40)
headers = st.dictionaries(
    st.sampled_from(
        [
            "X-RateLimit-Limit",
            "X-RateLimit-Remaining",
            "X-RateLimit-Reset",
            "x-ratelimit-reset",
            "Retry-After",
            "Date",
            "Content-Type",
            "X-Other",
        ]
    ),
    header_values,
    max_size=6,
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**25), 10**25)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["NaN", "Infinity", "1e999999", "abc", "", "0", "-3", "2024-13-45"])
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "id",
                    "data",
                    "success",
                    "error",
                    "message",
                    "errors",
                    "meta",
                    "amount",
                    "items",
                    "total",
                    "total_pages",
                    "current_page",
                    "total_records",
                    "contact_id",
                    "email",
                    "created_at",
                    "date",
                    "customer_id",
                    "links",
                    "next",
                ]
            )
            | st.text(max_size=8),
            children,
            max_size=6,
        )
    ),
    max_leaves=25,
)
bodies = (
    json_values.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=300)
    | st.sampled_from(
        [
            b"",
            b"   ",
            b"[" * 100_000,
            b'{"a":' * 50_000,
            b'{"success": true, "data": NaN}',
            b'{"success": true, "data": [1, 2]} trailing',
            b"<html><body>Fatal error</body></html>",
            b'<br /><b>Warning</b>: x {"error": false, "contact_id": "12"}',
            b'{"success": false, "message": "bad KEY-hypothesis-3c1d here"}',
            b"\xff\xfe\x00bad utf-8",
        ]
    )
)
statuses = st.sampled_from([200, 201, 204, 301, 400, 401, 403, 404, 405, 422, 429, 500, 502, 503])


def raw(status: int, head: dict[str, str], body: bytes, method: str = "GET") -> RawResponse:
    request = build_request(
        site_root="https://crm.example.com",
        api_key=KEY,
        auth="query",
        method=method,
        path="customers/7",
        horizon=DEFAULT_HORIZON,
    )
    return RawResponse(status, head, body, request)


def assert_budget_is_sane(info: RateLimitInfo | None, horizon: float = DEFAULT_HORIZON) -> None:
    if info is None:
        return
    assert 0 <= info.remaining <= MAX_BUDGET
    assert info.limit is None or 1 <= info.limit <= MAX_BUDGET
    if info.reset_at is not None:
        assert math.isfinite(info.reset_at)
        assert abs(info.reset_at - NOW) <= horizon + 1e-6
        assert info.reset_epoch is not None
        assert math.isfinite(info.reset_epoch)


def assert_key_absent(error: CloudOnexError) -> None:
    assert KEY not in str(error)
    assert KEY not in repr(error)
    for value in vars(error).values():
        assert KEY not in str(value)


def assert_model_is_sane(model: Model) -> None:
    for field in attrs.fields(type(model)):
        value = getattr(model, field.name)
        if isinstance(value, Decimal):
            assert value.is_finite()
            assert len(format(value, "f")) <= MAX_AMOUNT_CHARS + 2  # sign and point
        elif isinstance(value, int) and not isinstance(value, bool):
            assert abs(value) < 2**64
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, Model):
                    assert_model_is_sane(item)
        elif value is not None and field.name != "extra":
            assert isinstance(value, (str, date, datetime, Model)), (field.name, value)


# -- every parser -----------------------------------------------------------------------


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(status=statuses, head=headers, body=bodies, method=st.sampled_from(["GET", "POST", "PUT"]))
def test_parse_response_returns_an_envelope_or_a_library_failure(
    status: int, head: dict[str, str], body: bytes, method: str
) -> None:
    answer = parse_response(raw(status, head, body, method), NOW)
    assert isinstance(answer, (Envelope, Failure))
    assert_budget_is_sane(answer.budget)
    if isinstance(answer, Failure):
        assert isinstance(answer.error, CloudOnexError)
        assert_key_absent(answer.error)
        assert answer.retry_after is None or 0 <= answer.retry_after <= DEFAULT_HORIZON
    else:
        json.dumps(answer.data, default=str)  # plain JSON values: serialisable again


@settings(max_examples=300)
@given(head=headers, now=st.floats(1e9, 4e9), horizon=st.floats(1.0, 1e6))
def test_budget_headers_give_none_or_a_sane_budget(
    head: dict[str, str], now: float, horizon: float
) -> None:
    info = RateLimitInfo.from_headers(head, now, horizon)
    if info is not None:
        assert 0 <= info.remaining <= MAX_BUDGET
        if info.reset_at is not None:
            assert abs(info.reset_at - now) <= horizon + 1e-6  # float rounding of now + delta
    retry_after = parse_retry_after(head, now, horizon)
    assert retry_after is None or 0 <= retry_after <= horizon
    skew = clock_skew(head.get("Date"), now, horizon)
    assert math.isfinite(skew)
    assert abs(skew) <= horizon


@settings(max_examples=300)
@given(data=json_values, meta=json_values, page_size=st.integers(1, 1000))
def test_paging_metadata_gives_bounded_pages_or_a_library_error(
    data: Any, meta: Any, page_size: int
) -> None:
    top = {"data": data, "meta": meta} if isinstance(meta, dict) else {"data": data}
    try:
        info = read_page(Envelope(data, top=top))
    except CloudOnexError:
        return
    for value, bound in ((info.total_pages, MAX_PAGES), (info.total_records, MAX_RECORDS)):
        assert value is None or 0 <= value <= bound
    count = known_page_count(info, page_size)
    assert count is None or 0 <= count <= MAX_RECORDS
    assert is_last_page(info, 1, seen=page_size) in (True, False)
    assert isinstance(hash(page_fingerprint(info.items)), int)


@given(data=json_values)
def test_created_ids_are_valid_ids_or_none(data: Any) -> None:
    found = created_id(data, ("id", "contact_id", "user_id"))
    assert found is None or (isinstance(found, int) and 0 < found < 2**64)


@settings(max_examples=300)
@given(data=st.dictionaries(st.text(max_size=12) | st.sampled_from(["id", "amount", "items",
       "price", "date", "created_at", "customer_id", "qty", "events", "income"]), json_values,
       max_size=8), model=st.sampled_from(MODELS))  # fmt: skip
@example(data={"amount": "NaN", "price": "Infinity", "tax_rate": "1e99"}, model=Product)
@example(data={"id": "9" * 30, "customer_id": True, "amount": 1e300}, model=Invoice)
def test_any_record_becomes_a_sane_model_or_names_the_unreadable_field(
    data: dict[str, Any], model: type[Model]
) -> None:
    assert_model_is_sane(LENIENT_CONVERTER.structure(data, model))
    failure: UnreadableValueError | None = None
    try:
        assert_model_is_sane(CONVERTER.structure(data, model))
    except UnreadableValueError as error:
        failure = error
    if failure is not None:  # the error names a field of the record, and shows it
        assert failure.field.split("[")[0].split(".")[0] in data
        assert failure.field in str(failure)


@given(row=st.dictionaries(st.text(max_size=10), json_values, max_size=6), items=json_values)
def test_any_shipped_invoice_maps_onto_a_sane_model(row: dict[str, Any], items: Any) -> None:
    record = invoice_from_shipped({"invoice": row, "items": items})
    assert_model_is_sane(LENIENT_CONVERTER.structure(record, Invoice))


@given(status=statuses, head=headers, body=bodies)
def test_the_profile_probe_names_a_profile_or_fails_cleanly(
    status: int, head: dict[str, str], body: bytes
) -> None:
    answer = detect_profile(raw(status, head, body), NOW)
    if isinstance(answer, Failure):
        assert isinstance(answer.error, CloudOnexError)
    else:
        assert answer.data in ("documented", "shipped")


# -- the whole response path, through MockTransport ------------------------------------


def run_call(call: str, status: int, head: dict[str, str], body: bytes) -> object:
    """One call against a server that answers (status, headers, body), in a fresh loop."""

    def handler(request: Request) -> RawResponse:
        return RawResponse(status, head, body)

    async def go() -> object:
        async with Client(
            base_url="https://crm.example.com",
            api_key=KEY,
            auth="query",
            transport=MockTransport(handler),
            limiter=LocalLimiter(clock=FakeClock(NOW)),
            retry=RetryPolicy(attempts=2, backoff_base=0.0, backoff_max=0.0),
            max_wait=5.0,
        ) as client:
            try:
                if call == "request":
                    return await client.request("GET", "customers")
                if call == "get":
                    return await client.customers.get(7)
                if call == "list":
                    return await client.customers.list(page_size=5, limit=20).collect()
                if call == "create":
                    return await client.customers.create({"account": "A"})
                return await client.invoices.get(7)
            finally:
                status_now = client.rate_limit  # never raises, whatever was answered
                assert status_now.reset_at is None or status_now.reset_at.year < 9999

    return asyncio.run(go())


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    call=st.sampled_from(["request", "get", "list", "create", "invoice"]),
    status=statuses,
    head=headers,
    body=bodies,
)
def test_any_answer_through_the_client_ends_in_a_sane_value_or_a_library_error(
    call: str, status: int, head: dict[str, str], body: bytes
) -> None:
    try:
        value = run_call(call, status, head, body)
    except CloudOnexError as error:
        assert_key_absent(error)
        return
    if call in ("get", "invoice"):
        assert isinstance(value, Model)
        assert value.id in (None, 7)
        assert_model_is_sane(value)
    elif call == "list":
        assert isinstance(value, list)
        assert len(value) <= 20
        for model in value:
            assert isinstance(model, Customer)
            assert_model_is_sane(model)
    elif call == "create":
        assert isinstance(value, Customer)
        assert value.id is not None
        assert 0 < value.id < 2**64
        assert_model_is_sane(value)


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000, b'{"data":' * 50_000 + b"1" + b"}" * 50_000],
    ids=["deep-list", "deep-object"],
)
def test_absurdly_nested_json_is_a_parse_error_not_a_recursion_error(body: bytes) -> None:
    answer = parse_response(raw(200, {}, body), NOW)
    assert isinstance(answer, Failure)
    assert type(answer.error).__name__ == "ResponseParseError"
