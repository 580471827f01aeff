"""The sans-I/O pieces of real installs: routes, profiles, shipped shapes, profile detection."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from cloudonex_async import errors
from cloudonex_async._profile import make_profile
from cloudonex_async._protocol import (
    Envelope,
    RawResponse,
    Request,
    build_request,
    detect_profile,
    parse_response,
    unwrap,
)
from cloudonex_async._shipped import invoice_from_shipped, invoice_to_shipped

KEY = "k3y"
APACHE_404 = b"<html><head><title>404 Not Found</title></head><body>Not Found</body></html>"


def answer(
    status: int,
    body: object | bytes,
    *,
    method: str = "GET",
    path: str = "customers",
    encoding: str | None = None,
    headers: dict[str, str] | None = None,
) -> RawResponse:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = Request(
        method,
        "https://x.test/",
        f"https://x.test/?ng=api/v2/{path}",
        body_encoding=encoding,  # type: ignore[arg-type]
        profile="shipped",
        path=path,
    )
    return RawResponse(status, headers or {}, payload, request)


NOW = 1_700_000_000.0


def parse(response: RawResponse) -> Envelope:
    """The envelope of an answer, or its error raised."""
    return unwrap(parse_response(response, NOW))


def profile_of(response: RawResponse) -> str:
    """The profile the probe's answer names, or its error raised."""
    return str(unwrap(detect_profile(response, NOW)).data)


@pytest.mark.parametrize(
    ("auth", "route_style", "url", "params"),
    [
        ("bearer", "path", "https://x.test/api/v2/customers/7", ()),
        ("bearer", "ng", "https://x.test/", (("ng", "api/v2/customers/7"),)),
        ("query", None, "https://x.test/", (("api_key", KEY), ("ng", "api/v2/customers/7"))),
        ("query", "path", "https://x.test/api/v2/customers/7", (("api_key", KEY),)),
    ],
)
def test_routes_in_each_style(
    auth: str, route_style: str | None, url: str, params: tuple[tuple[str, str], ...]
) -> None:
    request = build_request(
        site_root="https://x.test",
        api_key=KEY,
        auth=auth,  # type: ignore[arg-type]
        method="GET",
        path="/customers/7",
        route_style=route_style,  # type: ignore[arg-type]
    )
    assert (request.url, request.params) == (url, params)
    assert KEY not in request.display_url
    assert request.resource == "customers"


def test_profiles_and_their_overrides() -> None:
    shipped = make_profile("shipped")
    assert (shipped.body_encoding, shipped.route_style, shipped.item_paths) == (
        "form",
        "ng",
        "singular",
    )
    assert (shipped.paged, shipped.batch) == (False, False)
    documented = make_profile("documented")
    assert (documented.body_encoding, documented.route_style, documented.item_paths) == (
        "json",
        "path",
        "plural",
    )
    assert make_profile("documented", auth="query").route_style == "ng"
    mixed = make_profile("shipped", route_style="path", item_paths="plural")
    assert (mixed.body_encoding, mixed.route_style, mixed.item_paths) == ("form", "path", "plural")


def test_an_html_404_is_a_missing_route_not_a_missing_record() -> None:
    for body in (APACHE_404, b""):
        with pytest.raises(errors.RouteNotFoundError) as info:
            parse(answer(404, body, method="DELETE", path="customers/7"))
        assert not isinstance(info.value, errors.NotFoundError)
        assert "route_style='ng'" in str(info.value)
    with pytest.raises(errors.NotFoundError):
        parse(answer(404, {"success": False, "message": "Customer not found"}))


@pytest.mark.parametrize("status", [200, 404])
@pytest.mark.parametrize("message", ["Unknown resources requested!", "Unknown Method!"])
def test_what_a_build_lacks_is_unsupported(status: int, message: str) -> None:
    with pytest.raises(errors.UnsupportedError) as info:
        parse(answer(status, {"error": True, "message": message}, path="invoices"))
    assert (info.value.resource, info.value.profile) == ("invoices", "shipped")


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_an_empty_200_to_an_update_or_delete_is_unsupported(method: str) -> None:
    with pytest.raises(errors.UnsupportedError, match="did nothing"):
        parse(answer(200, b"", method=method, path="customer/3"))


def test_an_empty_200_to_a_create_is_unconfirmed_not_unsupported() -> None:
    # The record may exist (a host that stored it and then lost the answer).
    with pytest.raises(errors.ResponseParseError, match="did not confirm"):
        parse(answer(200, b"", method="POST"))


def test_a_legacy_failure_to_a_json_body_points_to_form_bodies() -> None:
    body = {"error": True, "message": ["Account Name is required"]}
    with pytest.raises(errors.ValidationError, match="body_encoding='form'"):
        parse(answer(200, body, method="POST", path="customer", encoding="json"))
    with pytest.raises(errors.ValidationError) as form:
        parse(answer(200, body, method="POST", path="customer", encoding="form"))
    assert "body_encoding" not in str(form.value)


def test_a_not_found_message_on_a_create_is_a_validation_error() -> None:
    body = {"error": True, "message": ["Customer Not Found"]}
    with pytest.raises(errors.ValidationError):
        parse(answer(200, body, method="POST", path="invoice", encoding="form"))
    with pytest.raises(errors.NotFoundError):
        parse(answer(200, {"error": True, "message": "Invoice not found!"}, method="PUT"))


@pytest.mark.parametrize(
    ("status", "body", "headers", "profile"),
    [
        (404, {"success": False, "message": "Unknown resources requested!"}, {}, "documented"),
        (200, {"success": True, "data": None}, {}, "documented"),
        (404, {"message": "nope"}, {"X-RateLimit-Remaining": "9"}, "documented"),
        (200, {"error": True, "message": "Unknown resources requested!"}, {}, "shipped"),
        (200, [], {}, "shipped"),
        (204, b"", {}, "documented"),
    ],
)
def test_detect_profile(status: int, body: object, headers: dict[str, str], profile: str) -> None:
    assert profile_of(answer(status, body, headers=headers)) == profile


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, {"error": True, "message": "No valid API key provided."}, errors.AuthenticationError),
        (500, b"", errors.ServerError),
        (200, b"<html>oops</html>", errors.ResponseParseError),
        (404, APACHE_404, errors.RouteNotFoundError),
    ],
)
def test_detect_profile_raises_for_answers_that_are_not_the_api(
    status: int, body: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        profile_of(answer(status, body))


def test_a_shipped_invoice_maps_onto_the_model_and_keeps_the_rest() -> None:
    record = invoice_from_shipped(
        {
            "invoice": {
                "id": 7,
                "userid": "3",
                "total": "30.03",
                "duedate": "2024-02-01",
                "date": "2024-01-02",
                "invoicenum": "INV-",
                "cn": "00007",
                "status": "Unpaid",
                "subtotal": "30.03",
                "vtoken": None,
            },
            "items": [{"id": 90, "itemcode": "W1", "qty": "3", "amount": "10.01", "taxed": "0"}],
        }
    )
    assert record == {
        "id": 7,
        "customer_id": "3",
        "amount": "30.03",
        "due_date": "2024-02-01",
        "date": "2024-01-02",
        "invoicenum": "INV-",
        "cn": "00007",
        "status": "Unpaid",
        "subtotal": "30.03",
        "vtoken": None,
        "invoice_number": "INV-00007",
        "items": [{"id": 90, "item_code": "W1", "qty": "3", "amount": "10.01", "taxed": "0"}],
    }


def test_a_shipped_invoice_create_fills_the_vendor_fields() -> None:
    body = invoice_to_shipped(
        {
            "customer_id": 3,
            "date": "2024-01-02",
            "due_date": dt.date(2024, 1, 17),
            "notes": "n",
            "items": [{"description": "A", "amount": Decimal("1.50"), "item_code": "A1"}, {}],
        },
        today=dt.date(2030, 1, 1),
    )
    assert body == {
        "notes": "n",
        "cid": 3,
        "idate": "2024-01-02",
        "duedate": "days15",
        "repeat": "0",
        "items": [
            {
                "description": "A",
                "amount": Decimal("1.50"),
                "item_code": "A1",
                "qty": 1,
                "taxed": 0,
            },
            {"item_code": "", "qty": 1, "taxed": 0},
        ],
    }
    plain = invoice_to_shipped({"customer_id": 3, "items": [{}]}, today=dt.date(2030, 1, 1))
    assert (plain["idate"], plain["duedate"]) == ("2030-01-01", "due_on_receipt")
    given = invoice_to_shipped(
        {"customer_id": 3, "duedate": "days60", "repeat": "month1", "items": [{}]},
        today=dt.date(2030, 1, 1),
    )
    assert (given["duedate"], given["repeat"]) == ("days60", "month1")


@pytest.mark.parametrize(
    "payload",
    [
        {"customer_id": 3},
        {"customer_id": 3, "items": []},
        {"customer_id": 3, "items": ["A"]},
        {"customer_id": 3, "date": "2024-01-01", "due_date": "2024-01-02", "items": [{}]},
        {"customer_id": 3, "date": "January", "items": [{}]},
    ],
)
def test_shipped_invoice_creates_that_would_go_wrong_are_refused(
    payload: dict[str, object],
) -> None:
    with pytest.raises(errors.ValidationError, match="nothing was sent"):
        invoice_to_shipped(payload, today=dt.date(2030, 1, 1))
