"""Values are read exactly or not at all: money, ids, dates and text, through the API."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudonex_async import Client, Customer, Invoice, Product, ResponseParseError, ValidationError
from cloudonex_async._convert import CONVERTER, MAX_AMOUNT_CHARS, UnreadableValueError, to_decimal
from cloudonex_async._protocol import encode_form, encode_json
from cloudonex_async.testing import SandboxServer

from .conftest import ClientFactory, SandboxFactory

BIG = Decimal("12345678901234567.89")


@pytest.mark.parametrize(
    "amount",
    [BIG, Decimal("1e15"), Decimal("-99999999999999999999999999999999.9999"), Decimal("0.0001")],
)
async def test_money_of_any_magnitude_goes_and_comes_back_exactly(
    client: Client, sandbox: SandboxServer, amount: Decimal
) -> None:
    created = await client.products.create({"name": "Big", "price": amount})
    assert created.id is not None
    assert Decimal(str(sandbox.records("products")[0]["price"])) == amount
    fetched = await client.products.get(created.id)
    assert fetched.price == amount
    assert "price" not in fetched.extra
    [listed] = await client.products.list().collect()
    assert listed.price == amount


@given(
    (
        st.decimals(allow_nan=False, allow_infinity=False, places=2)
        | st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**40), max_value=10**40)
    ).filter(lambda amount: len(str(abs(amount))) <= MAX_AMOUNT_CHARS)  # what it promises
)
def test_any_amount_the_library_writes_it_reads_back(amount: Decimal) -> None:
    sent = CONVERTER.unstructure(Product(price=amount))["price"]
    assert CONVERTER.structure({"price": sent}, Product).price == amount


def test_an_amount_longer_than_the_library_reads_is_refused_not_rounded() -> None:
    amount = "9" * MAX_AMOUNT_CHARS
    assert CONVERTER.structure({"price": amount}, Product).price == Decimal(amount)
    with pytest.raises(UnreadableValueError, match="longer than"):
        CONVERTER.structure({"price": amount + "9"}, Product)


@pytest.mark.parametrize(
    ("text", "amount"),
    [("1,234.50", Decimal("1234.50")), ("12,345,678.9", Decimal("12345678.9")), (" 7 ", 7)],
)
def test_a_comma_separates_thousands_only_in_the_grouped_form(text: str, amount: Decimal) -> None:
    assert to_decimal(text) == amount


@pytest.mark.parametrize("text", ["12,50", "1,234", "1.234,50", "12 50", "NaN", "1e99999", "€5"])
def test_text_that_is_not_plainly_an_amount_is_not_guessed(text: str) -> None:
    with pytest.raises(ValueError, match=r"not|digits"):
        to_decimal(text)


@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [
        ("price", "12,50", "'12,50'"),
        ("price", "abc", "'abc'"),
        ("created_at", "2024-02-30 10:00:00", "2024-02-30"),
        ("name", True, "True"),
    ],
)
async def test_an_unreadable_value_raises_naming_the_record_the_field_and_the_value(
    client: Client, sandbox: SandboxServer, field: str, value: object, shown: str
) -> None:
    [record_id] = sandbox.seed("products", [{"name": "P", field: value}])
    with pytest.raises(ResponseParseError) as raised:
        await client.products.get(record_id)
    message = str(raised.value)
    assert f"Product {record_id}" in message
    assert field in message
    assert shown in message
    assert "lenient_values=True" in message  # and what to do about it
    assert raised.value.field == field
    with pytest.raises(ResponseParseError):
        await client.products.list().collect()  # a listing is no more lenient


async def test_lenient_values_keeps_the_raw_value_in_extra_with_one_warning_per_field(
    sandbox: SandboxServer, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox.seed("products", [{"name": f"P{n}", "price": f"{n},50"} for n in range(3)])
    client = make_client(sandbox, lenient_values=True)
    with caplog.at_level(logging.WARNING, logger="cloudonex_async"):
        products = await client.products.list().collect()
    assert [p.price for p in products] == [None, None, None]
    assert [p.extra["price"] for p in products] == ["0,50", "1,50", "2,50"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "Product.price" in warnings[0].getMessage()


async def test_ids_up_to_the_largest_unsigned_64_bit_one_are_read(
    client: Client, sandbox: SandboxServer
) -> None:
    [record_id] = sandbox.seed("invoices", [{"customer_id": str(2**63 + 5), "amount": "1"}])
    invoice = await client.invoices.get(record_id)
    assert invoice.customer_id == 2**63 + 5
    [too_big] = sandbox.seed("invoices", [{"customer_id": str(2**64), "amount": "1"}])
    with pytest.raises(ResponseParseError, match="customer_id"):
        await client.invoices.get(too_big)


@pytest.mark.parametrize("zero", ["0000-00-00", "0000-00-00 00:00:00", "", "  "])
async def test_a_mysql_zero_date_or_an_empty_one_means_no_date(
    client: Client, sandbox: SandboxServer, zero: str
) -> None:
    [record_id] = sandbox.seed(
        "invoices", [{"customer_id": 1, "date": zero, "due_date": zero, "created_at": zero}]
    )
    invoice = await client.invoices.get(record_id)
    assert (invoice.date, invoice.due_date, invoice.created_at) == (None, None, None)
    assert not invoice.extra


def test_values_read_as_their_types() -> None:
    invoice = CONVERTER.structure(
        {"id": "7", "date": "2024-02-29", "created_at": "2024-02-29T10:00:00Z", "amount": 5},
        Invoice,
    )
    assert invoice.id == 7
    assert invoice.date == date(2024, 2, 29)
    assert isinstance(invoice.created_at, datetime)
    assert invoice.amount == Decimal(5)


def test_a_nested_unreadable_value_is_named_with_its_item() -> None:
    with pytest.raises(UnreadableValueError) as raised:
        CONVERTER.structure({"id": 3, "items": [{"amount": "1"}, {"amount": "x"}]}, Invoice)
    assert raised.value.field == "items[1].amount"


async def test_what_cannot_be_read_back_is_not_sent(client: Client, sandbox: SandboxServer) -> None:
    with pytest.raises(ValidationError, match="price") as raised:
        await client.products.create({"name": "P", "price": "12,50"})
    assert raised.value.status == 0
    assert raised.value.errors.keys() == {"price"}
    assert sandbox.count() == 0  # nothing was sent


async def test_a_sync_sees_a_change_between_two_seventeen_digit_amounts(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await make_sandbox()
    sandbox.seed("products", [{"name": "Widget", "price": "99999999999999999.99"}])
    client = make_client(sandbox)
    result = await client.products.sync([{"name": "Widget", "price": BIG}], key="name")
    [outcome] = result.outcomes
    assert outcome.status == "updated"
    assert outcome.changes == {"price": str(BIG)}
    assert Decimal(str(sandbox.records("products")[0]["price"])) == BIG
    again = await client.products.sync([{"name": "Widget", "price": BIG}], key="name")
    assert again.outcomes[0].status == "unchanged"


async def test_a_lenient_sync_never_takes_an_unreadable_remote_value_for_no_change(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await make_sandbox()
    sandbox.seed("products", [{"name": "Widget", "price": "12,50"}])
    client = make_client(sandbox, lenient_values=True)
    result = await client.products.sync([{"name": "Widget", "price": "12.50"}], key="name")
    assert result.outcomes[0].status == "updated"
    assert sandbox.records("products")[0]["price"] == Decimal("12.50")


def test_unknown_fields_stay_raw_and_text_fields_take_numbers() -> None:
    customer = CONVERTER.structure({"phone": 5551234, "tier": {"x": 1}}, Customer)
    assert customer.phone == "5551234"
    assert customer.extra == {"tier": {"x": 1}}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-05", datetime(2024, 1, 5)),
        ("2024-01-05 10:00:00", datetime(2024, 1, 5, 10)),
        ("2024-01-05T10:00:00.5", datetime(2024, 1, 5, 10, 0, 0, 500000)),
        ("2024-01-05T10:00:00.000000Z", datetime(2024, 1, 5, 10, tzinfo=timezone.utc)),
        ("2024-01-05T10:00+0200", datetime(2024, 1, 5, 10, tzinfo=timezone(timedelta(hours=2)))),
        (
            "2024-01-05 10:00:00-05:30",
            datetime(2024, 1, 5, 10, tzinfo=timezone(-timedelta(hours=5, minutes=30))),
        ),
    ],
)
def test_dates_and_times_read_the_same_on_every_python(text: str, expected: datetime) -> None:
    assert CONVERTER.structure({"created_at": text}, Product).created_at == expected


@pytest.mark.parametrize(
    "text",
    ["2024-01-05T10:00:00.1234567", "2024-W01-1", "20240105", "2024-02-30", "2024-01-05 25:00"],
)
def test_a_date_and_time_outside_the_formats_is_not_guessed(text: str) -> None:
    with pytest.raises(UnreadableValueError, match="created_at"):
        CONVERTER.structure({"created_at": text}, Product)
    with pytest.raises(UnreadableValueError, match="created_at"):
        CONVERTER.structure({"created_at": 20240105}, Product)  # a number is no date


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("price", "\u0661\u0662\u0663"),
        ("id", "\uff11\uff12\uff13"),
        ("created_at", "\u0662\u0660\u0662\u0664-01-05"),
    ],
)
def test_digits_other_than_ascii_are_not_read(field: str, value: str) -> None:
    with pytest.raises(UnreadableValueError, match=field):
        CONVERTER.structure({field: value}, Product)


async def test_what_is_sent_is_what_the_model_holds(client: Client, sandbox: SandboxServer) -> None:
    await client.products.create({"name": "A", "price": "1,234.50", "tax_rate": Decimal("1E+1")})
    stored = sandbox.records("products")[0]
    assert (stored["price"], stored["tax_rate"]) == (Decimal("1234.50"), Decimal("10"))


def test_amounts_go_out_as_plain_digits_never_an_exponent() -> None:
    body = {"price": Decimal("1E+3"), "tax_rate": Decimal("5E-7")}
    assert encode_json(body) == b'{"price":"1000","tax_rate":"0.0000005"}'
    assert dict(encode_form(body)) == {"price": "1000", "tax_rate": "0.0000005"}
    assert CONVERTER.unstructure(Product(price=Decimal("1E+3"))) == {"price": "1000"}


async def test_text_compares_as_text_in_a_sync(
    make_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    sandbox = await make_sandbox()
    sandbox.seed("customers", [{"account": "A", "email": "a@example.com", "zip": "1234"}])
    client = make_client(sandbox)
    result = await client.customers.sync(
        [{"account": "A", "email": "a@example.com", "zip": "01234"}], key="email"
    )
    assert result.outcomes[0].status == "updated"
    assert sandbox.records("customers")[0]["zip"] == "01234"
