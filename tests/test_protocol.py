"""The sans-I/O core: envelopes, errors, budget headers, retry decisions, pages. No network."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from email.utils import formatdate

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudonex_async import errors
from cloudonex_async._protocol import (
    Envelope,
    JSONValue,
    PageInfo,
    RateLimitInfo,
    RawResponse,
    Request,
    RetryPolicy,
    build_request,
    created_id,
    format_id,
    is_last_page,
    json_after_php_diagnostics,
    normalize_base_url,
    outcome_unknown,
    parse_response,
    parse_retry_after,
    read_page,
    redact,
    retry_decision,
    session_headers,
    unwrap,
)

KEY = "s3cr3t/key+value"


NOW = 1_700_000_000.0


def request_for(method: str = "GET", path: str = "customers") -> Request:
    url = f"https://x.test/api/v2/{path}"
    return Request(method, url, url, path=path)


def raw(
    status: int,
    body: object | bytes,
    headers: dict[str, str] | None = None,
    method: str = "GET",
) -> RawResponse:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return RawResponse(status, headers or {}, payload, request_for(method))


def parse(response: RawResponse, now: float = NOW) -> Envelope:
    """The envelope of an answer, or its error raised."""
    return unwrap(parse_response(response, now))


# -- envelopes -----------------------------------------------------------------------


def test_documented_envelope_gives_data_message_and_meta() -> None:
    envelope = parse(
        raw(200, {"success": True, "data": [1], "message": "ok", "meta": {"total_pages": 2}})
    )
    assert envelope.data == [1]
    assert envelope.message == "ok"
    assert envelope.meta == {"meta": {"total_pages": 2}}


@pytest.mark.parametrize(
    ("body", "data"),
    [
        ([{"id": 1}], [{"id": 1}]),  # bare array (shipped servers' listings)
        ({"id": 3, "account": "A"}, {"id": 3, "account": "A"}),  # bare record
        ({"error": False, "contact_id": "12", "message": "Created"}, {"contact_id": "12"}),
    ],
)
def test_legacy_success_shapes(body: object, data: object) -> None:
    assert parse(raw(200, body)).data == data


def test_fractional_numbers_decode_as_decimal_not_float() -> None:
    envelope = parse(raw(200, b'{"success": true, "data": {"amount": 1500.10}}'))
    assert envelope.data == {"amount": Decimal("1500.10")}
    assert str(envelope.data["amount"]) == "1500.10"  # type: ignore[index]


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, errors.ValidationError),
        (401, errors.AuthenticationError),
        (403, errors.PermissionDeniedError),
        (404, errors.NotFoundError),
        (409, errors.APIError),
        (429, errors.RateLimitError),
        (500, errors.ServerError),
        (503, errors.ServerError),
    ],
)
def test_status_maps_to_error_class(status: int, cls: type[errors.APIError]) -> None:
    body = {"success": False, "errors": {"email": "Invalid email format"}, "message": "Nope"}
    with pytest.raises(cls) as info:
        parse(raw(status, body))
    assert type(info.value) is cls
    assert info.value.status == status
    assert info.value.errors == {"email": "Invalid email format"}
    assert "Nope" in str(info.value)


def test_legacy_failure_at_200_with_message_list_is_validation_error() -> None:
    body = {"error": True, "message": ["Invalid Date", "Date Parsing Error"]}
    response = raw(200, body, method="POST")
    with pytest.raises(errors.ValidationError) as info:
        parse(response)
    assert info.value.errors == {"0": "Invalid Date", "1": "Date Parsing Error"}
    assert "Invalid Date; Date Parsing Error" in info.value.message


def test_legacy_not_found_at_200_is_not_found() -> None:
    with pytest.raises(errors.NotFoundError):
        parse(raw(200, {"error": True, "message": "Invoice not found!"}))


def test_success_false_at_200_is_an_error_even_without_message() -> None:
    with pytest.raises(errors.APIError, match="without a message"):
        parse(raw(200, {"success": False}))


def test_errors_as_list() -> None:
    with pytest.raises(errors.ValidationError) as info:
        parse(raw(400, {"success": False, "errors": ["a", "b"], "message": "bad"}))
    assert info.value.errors == {"0": "a", "1": "b"}


@pytest.mark.parametrize(
    ("status", "body", "cls", "quoted"),
    [
        (200, b"<html><b>Fatal error</b>: boom</html>", errors.ResponseParseError, "Fatal error"),
        (200, b'{"success": true, "data": [{"id": 1, "acc', errors.ResponseParseError, "acc"),
        (200, b"", errors.ResponseParseError, "empty body"),
        (200, b'<br /><b>Warning</b>: x {"error":fal', errors.ResponseParseError, "Warning"),
        (502, b"<html>Bad Gateway</html>", errors.ServerError, "Bad Gateway"),
    ],
)
def test_bodies_that_are_not_json_say_so_with_an_excerpt(
    status: int, body: bytes, cls: type[errors.CloudOnexError], quoted: str
) -> None:
    with pytest.raises(cls) as info:
        parse(raw(status, body))
    assert quoted in str(info.value)
    assert str(status) in str(info.value)


PHP_WARNING = (
    b"<br />\n<b>Warning</b>:  Undefined variable $x in <b>/var/www/api.php</b> on line "
    b"<b>12</b><br />\n"
)


def test_json_after_a_php_warning_is_read() -> None:
    body = PHP_WARNING + b'{"error":false,"contact_id":"12","message":"Account Created"}'
    envelope = parse(raw(200, body))
    assert created_id(envelope.data, ("id", "contact_id")) == 12


def test_a_failure_after_a_php_warning_is_still_a_failure() -> None:
    body = PHP_WARNING + b'{"error":true,"message":["Invalid Date"]}'
    with pytest.raises(errors.APIError, match="Invalid Date"):
        parse(raw(200, body))


@pytest.mark.parametrize(
    "body",
    [
        b'<html><b>Fatal error</b>: boom {"a": 1}</html>',  # no diagnostic we salvage after
        PHP_WARNING + b'{"success": true} and then more text',  # JSON does not fill the rest
        b'{"a": 1} <b>Warning</b>: printed after the answer',  # nothing in front
        b"<b>Notice</b>: [" * 50 + b'{"a": 1',  # junk: bounded tries, no answer
    ],
)
def test_only_a_whole_json_answer_behind_php_diagnostics_is_salvaged(body: bytes) -> None:
    assert json_after_php_diagnostics(body) == (False, None)


@given(
    # A warning is text PHP printed: no surrogates (they cannot be encoded) and no brackets.
    warning=st.text(alphabet=st.characters(blacklist_characters="{[", blacklist_categories=["Cs"])),
    value=st.dictionaries(st.text(), st.integers() | st.text() | st.booleans(), max_size=5),
)
def test_any_object_behind_a_warning_is_found(warning: str, value: dict[str, object]) -> None:
    body = f"<b>Warning</b>: {warning}\n".encode() + json.dumps(value).encode()
    assert json_after_php_diagnostics(body) == (True, value)


def test_excerpt_is_bounded() -> None:
    with pytest.raises(errors.ResponseParseError) as info:
        parse(raw(200, b"<html>" + b"x" * 5000))
    assert len(info.value.body_excerpt) <= 200


def test_204_without_body_is_success() -> None:
    assert parse(raw(204, b"", method="DELETE")).data is None


def test_429_carries_retry_after_and_reset() -> None:
    headers = {
        "Retry-After": "30",
        "X-RateLimit-Limit": "1000",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(int(NOW) + 1800),
    }
    with pytest.raises(errors.RateLimitError) as info:
        parse(raw(429, {"success": False, "message": "slow down"}, headers))
    assert info.value.retry_after == 30
    assert info.value.limit == 1000
    assert info.value.reset_at is not None
    assert info.value.reset_at.timestamp() == NOW + 1800


@given(status=st.integers(100, 599), body=st.binary(max_size=300))
def test_any_answer_parses_or_raises_a_library_error(status: int, body: bytes) -> None:
    try:
        parse(raw(status, body))
    except errors.CloudOnexError:
        pass


@given(st.decimals(allow_nan=False, allow_infinity=False, places=2))
def test_money_survives_the_wire_exactly(amount: Decimal) -> None:
    body = json.dumps({"success": True, "data": {"amount": str(amount)}}).encode()
    data = parse(raw(200, body)).data
    assert isinstance(data, dict)
    assert Decimal(str(data["amount"])) == amount


# -- requests ------------------------------------------------------------------------


def test_bearer_request_puts_the_key_in_the_header_only() -> None:
    request = build_request(
        site_root="https://x.test",
        api_key=KEY,
        auth="bearer",
        method="get",
        path="customers",
        params={"page": 2, "search": None},
    )
    assert request.method == "GET"
    assert request.url == "https://x.test/api/v2/customers"
    assert request.params == (("page", "2"),)
    assert KEY not in request.display_url
    assert KEY not in repr(request)


def test_query_request_uses_the_documented_ng_route_and_hides_the_key() -> None:
    request = build_request(
        site_root="https://x.test", api_key=KEY, auth="query", method="GET", path="customers/7"
    )
    assert request.url == "https://x.test/"
    assert request.params[:2] == (("api_key", KEY), ("ng", "api/v2/customers/7"))
    assert request.display_url == "https://x.test/?ng=api/v2/customers/7"
    assert KEY not in repr(request)


def test_session_headers_carry_the_key_only_in_bearer_mode() -> None:
    bearer = session_headers(api_key=KEY, auth="bearer", user_agent="ua")
    assert bearer == {
        "Accept": "application/json",
        "User-Agent": "ua",
        "Authorization": f"Bearer {KEY}",
    }
    query = session_headers(api_key=KEY, auth="query", user_agent="ua")
    assert KEY not in repr(query)


def test_json_body_keeps_money_digits() -> None:
    request = build_request(
        site_root="https://x.test",
        api_key=KEY,
        auth="bearer",
        method="POST",
        path="invoices",
        body={"amount": Decimal("100.10"), "qty": 1},
    )
    assert request.body == b'{"amount":"100.10","qty":1}'


def test_form_body_uses_php_brackets() -> None:
    request = build_request(
        site_root="https://x.test",
        api_key=KEY,
        auth="bearer",
        method="POST",
        path="invoices",
        body={"cid": 3, "items": [{"description": "A", "amount": Decimal("1.50")}]},
        body_encoding="form",
    )
    assert request.body == b"cid=3&items%5B0%5D%5Bdescription%5D=A&items%5B0%5D%5Bamount%5D=1.50"


@pytest.mark.parametrize(
    ("given_url", "root"),
    [
        ("https://crm.example.com", "https://crm.example.com"),
        ("https://crm.example.com/", "https://crm.example.com"),
        ("https://crm.example.com/api/v2/", "https://crm.example.com"),
        ("https://example.com/crm/api/v2", "https://example.com/crm"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://localhost:8080/api/v2/", "http://localhost:8080"),
    ],
)
def test_base_url_takes_root_or_api_url(given_url: str, root: str) -> None:
    assert normalize_base_url(given_url, allow_insecure_http=False) == root


def test_plain_http_to_a_remote_host_is_refused_unless_allowed() -> None:
    with pytest.raises(errors.ConfigurationError, match="allow_insecure_http"):
        normalize_base_url("http://crm.example.com", allow_insecure_http=False)
    assert normalize_base_url("http://crm.example.com", allow_insecure_http=True) == (
        "http://crm.example.com"
    )


@pytest.mark.parametrize("bad", ["../settings", "1/../../x", "", " 1", "1.5", "-1", True, 1.0])
def test_ids_must_be_digits(bad: object) -> None:
    with pytest.raises(errors.ConfigurationError):
        format_id(bad)  # type: ignore[arg-type]


def test_redact_covers_raw_and_url_encoded_forms() -> None:
    text = f"a {KEY} b s3cr3t%2Fkey%2Bvalue c s3cr3t%2Fkey%2Bvalue"
    assert "s3cr3t" not in redact(text, KEY)


def test_created_id_reads_documented_and_legacy_answers() -> None:
    assert created_id({"id": 5, "account": "A"}) == 5
    assert created_id({"contact_id": "12"}, ("id", "contact_id")) == 12
    assert created_id({"user_id": 9}, ("id", "user_id")) == 9
    assert created_id({"message": "?"}) is None
    # Only the named keys: a record's customer_id is not its id.
    assert created_id({"customer_id": 7, "amount": "1.00"}) is None
    assert created_id({"contact_id": "12"}) is None
    bad_ids: list[JSONValue] = ["abc", "", "-3", "0", None, True, Decimal("1.5"), [1]]
    for bad in bad_ids:
        assert created_id({"id": bad}) is None


# -- the budget headers --------------------------------------------------------------


def test_rate_limit_headers_are_read() -> None:
    info = RateLimitInfo.from_headers(
        {
            "x-ratelimit-limit": "1000",
            "X-RateLimit-Remaining": "999",
            "X-RateLimit-Reset": "1516131220",
        },
        now=1516131000.0,
    )
    assert info == RateLimitInfo(
        remaining=999, limit=1000, reset_epoch=1516131220.0, reset_at=1516131220.0
    )


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-RateLimit-Remaining": "many"},
        {"X-RateLimit-Remaining": "1", "X-RateLimit-Reset": "soon"},
    ],
)
def test_missing_or_garbled_headers_are_ignored(headers: dict[str, str]) -> None:
    assert RateLimitInfo.from_headers(headers, now=0.0) is None


def test_reset_is_moved_onto_the_local_clock_by_the_date_header() -> None:
    headers = {
        "X-RateLimit-Remaining": "5",
        "X-RateLimit-Reset": "1700003600",
        "Date": "Tue, 14 Nov 2023 22:13:20 GMT",  # 1700000000: the server is 100 s behind us
    }
    info = RateLimitInfo.from_headers(headers, now=1700000100.0)
    assert info is not None
    assert info.reset_epoch == 1700003600
    assert info.reset_at == 1700003700


def test_small_skews_are_within_the_date_headers_resolution_and_ignored() -> None:
    headers = {
        "X-RateLimit-Remaining": "5",
        "X-RateLimit-Reset": "1700003600",
        "Date": "Tue, 14 Nov 2023 22:13:20 GMT",
    }
    info = RateLimitInfo.from_headers(headers, now=1700000000.9)
    assert info is not None
    assert info.reset_at == 1700003600


def test_small_reset_values_are_read_as_seconds_from_now() -> None:
    info = RateLimitInfo.from_headers(
        {"X-RateLimit-Remaining": "5", "X-RateLimit-Reset": "60"}, now=1000.0
    )
    assert info is not None
    assert info.reset_at == 1060.0


# -- retries -------------------------------------------------------------------------

POLICY = RetryPolicy(attempts=3)


def server_error(status: int, headers: dict[str, str] | None = None) -> errors.ServerError:
    return errors.ServerError("boom", status=status, headers=headers)


@pytest.mark.parametrize(
    ("method", "error", "retry"),
    [
        ("GET", server_error(500), True),
        ("GET", server_error(502), True),
        ("PUT", server_error(504), True),
        ("DELETE", errors.TransportError("dropped"), True),
        ("GET", errors.RequestTimeoutError("slow"), True),
        ("GET", errors.ValidationError("bad", status=400), False),
        ("GET", errors.NotFoundError("gone", status=404), False),
        ("POST", server_error(500), False),
        ("POST", server_error(502), False),
        ("POST", errors.TransportError("dropped"), False),
        ("POST", errors.RequestTimeoutError("slow"), False),
        ("POST", errors.TransportError("refused", request_sent=False), True),
        ("POST", errors.RateLimitError("429"), True),
        ("POST", server_error(503), False),
    ],
)
def test_retry_decisions(method: str, error: errors.CloudOnexError, retry: bool) -> None:
    decision = retry_decision(
        method=method, attempt=1, error=error, policy=POLICY, rng=random.Random(1)
    )
    assert decision.retry is retry


def test_a_503_with_retry_after_is_retried_even_for_a_post() -> None:
    decision = retry_decision(
        method="POST",
        attempt=1,
        error=server_error(503),
        policy=POLICY,
        rng=random.Random(1),
        retry_after=2.0,
    )
    assert (decision.retry, decision.delay) == (True, 2.0)


def test_retry_after_is_read_as_seconds_or_as_an_http_date_against_now() -> None:
    assert parse_retry_after({"Retry-After": " 7 "}, NOW) == 7.0
    dated = {"Retry-After": formatdate(NOW + 30, usegmt=True)}
    assert parse_retry_after(dated, NOW) == pytest.approx(30.0)
    # A server clock 100 s ahead (its Date header) moves the date onto ours.
    skewed = {**dated, "Date": formatdate(NOW + 100, usegmt=True)}
    assert parse_retry_after(skewed, NOW) == pytest.approx(0.0)
    assert parse_retry_after({"Retry-After": "soon"}, NOW) is None
    assert parse_retry_after({"Retry-After": "inf"}, NOW) is None


def test_retries_stop_at_the_attempt_bound() -> None:
    decision = retry_decision(
        method="GET", attempt=3, error=server_error(502), policy=POLICY, rng=random.Random(1)
    )
    assert not decision.retry


@given(attempt=st.integers(1, 30), seed=st.integers(0, 2**32))
def test_backoff_is_full_jitter_under_the_ceiling(attempt: int, seed: int) -> None:
    policy = RetryPolicy(attempts=100, backoff_base=0.5, backoff_max=30.0)
    decision = retry_decision(
        method="GET",
        attempt=attempt,
        error=server_error(502),
        policy=policy,
        rng=random.Random(seed),
    )
    assert 0.0 <= decision.delay <= min(30.0, 0.5 * 2 ** (attempt - 1))


def test_uncertain_post_outcomes_become_outcome_unknown() -> None:
    assert isinstance(outcome_unknown("POST", server_error(500)), errors.OutcomeUnknownError)
    assert isinstance(
        outcome_unknown("POST", errors.TransportError("x")), errors.OutcomeUnknownError
    )
    assert outcome_unknown("POST", errors.TransportError("x", request_sent=False)) is None
    assert outcome_unknown("POST", errors.ValidationError("x", status=400)) is None
    assert outcome_unknown("GET", server_error(500)) is None


# -- pages ---------------------------------------------------------------------------


def page(items: int, **meta: object) -> PageInfo:
    envelope = parse(raw(200, {"success": True, "data": [{"id": i} for i in range(items)], **meta}))
    return read_page(envelope)


@pytest.mark.parametrize(
    ("info", "number", "seen", "last"),
    [
        (page(0), 1, 0, True),  # empty
        (page(5), 1, 0, False),  # short, without totals: maybe a silent cap, not proof
        (page(10), 1, 0, False),  # full, no metadata
        (page(25), 1, 0, False),  # more than asked for: proves nothing either
        (page(10, meta={"current_page": 1, "total_pages": 2, "total_records": 20}), 1, 0, False),
        (page(10, meta={"current_page": 2, "total_pages": 2, "total_records": 20}), 2, 10, True),
        (page(10, total=20), 2, 10, True),
        (page(5, total=20), 2, 5, False),  # a capped page: the count says 10 more
        (page(5, total=20, last_page=2), 2, 5, False),  # the record count wins over pages
        (page(10, last_page=3), 2, 10, False),
        (page(10, last_page=3), 3, 20, True),
        (page(10, links={"next": None}), 1, 0, True),
        (page(10, next_page_url="https://x/?page=2"), 1, 0, False),
    ],
)
def test_end_of_listing_is_proven_by_an_empty_page_or_the_totals(
    info: PageInfo, number: int, seen: int, last: bool
) -> None:
    assert is_last_page(info, number, seen=seen) is last


def test_paginator_object_inside_data_is_read() -> None:
    envelope = parse(
        raw(
            200, {"success": True, "data": {"current_page": 1, "data": [{"id": 1}], "last_page": 4}}
        )
    )
    info = read_page(envelope)
    assert info.items == [{"id": 1}]
    assert info.total_pages == 4
