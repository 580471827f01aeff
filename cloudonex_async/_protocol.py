"""The wire protocol, free of I/O: build requests, read answers, decide retries.

Everything here takes plain values (status, headers, body bytes, ``now``, a
random generator) and returns plain values or raises :mod:`cloudonex_async.errors`.
Nothing awaits, opens a socket or reads a clock, so all of it is tested
table-style without a network.
"""

from __future__ import annotations

import functools
import html
import json
import logging
import math
import random
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timezone
from decimal import Decimal
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from types import MappingProxyType
from typing import TypeAlias

import attrs
from multidict import CIMultiDict, CIMultiDictProxy, istr

from ._profile import AuthMode, BodyEncoding, ProfileName, RouteStyle
from .errors import (
    APIError,
    AuthenticationError,
    CloudOnexError,
    ConfigurationError,
    NotFoundError,
    OutcomeUnknownError,
    PermissionDeniedError,
    RateLimitError,
    ResponseParseError,
    ResponseTooLargeError,
    RouteNotFoundError,
    ServerError,
    TransportError,
    UnsupportedError,
    ValidationError,
)

JSONValue: TypeAlias = (
    "bool | int | float | str | Decimal | list[JSONValue] | dict[str, JSONValue] | None"
)
"""A decoded JSON value. Numbers with a fraction decode to Decimal, never float."""


API_PREFIX = "api/v2/"
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
REDACTED = "<redacted>"
EXCERPT_CHARS = 200
# Below this, a Date-header skew is indistinguishable from the header's one-second
# resolution plus network time, and correcting for it would only add noise.
MIN_CORRECTED_SKEW = 2.0
#: How far from now a Reset, a Retry-After or a clock skew may plausibly be, when the
#: caller does not say (the client passes twice its rate_period): beyond, it is garbage.
DEFAULT_HORIZON = 7200.0
# Sanity bounds for numbers a server reports: budgets and listings beyond these are
# garbage, not facts (a billion requests per window, a million pages).
MAX_BUDGET = 10**9
MAX_PAGES = 10**6
MAX_RECORDS = 10**9
#: The largest record id: MySQL's BIGINT UNSIGNED.
MAX_ID = 2**64 - 1
# Server-quoted text kept in error messages: enough to read, never a whole page.
MAX_MESSAGE_CHARS = 500
MAX_FIELD_ERRORS = 50

logger = logging.getLogger("cloudonex_async")


# --------------------------------------------------------------------------- secrets


# A piece of the secret this long, where a text ends (or starts), is masked too: the
# server may have cut its own message in the middle of the key.
_MIN_SECRET_PIECE = 8


@functools.lru_cache(maxsize=8)
def _spellings(secret: str) -> tuple[str, ...]:
    """The ways a text may spell ``secret``: raw, URL-encoded, JSON- or HTML-escaped."""
    escaped = json.dumps(secret)[1:-1]
    forms = {
        secret,
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
        escaped,
        escaped.replace("/", "\\/"),  # PHP's json_encode escapes slashes
        html.escape(secret),
    }
    return tuple(sorted(forms, key=len, reverse=True))


def _longest_spelling(secret: str) -> int:
    """The length of the longest spelling of ``secret`` (0 for none)."""
    return len(_spellings(secret)[0]) if secret else 0


def redact(text: str, secret: str) -> str:
    """Return ``text`` with every spelling of ``secret`` replaced by ``<redacted>``.

    The spellings are the raw key and its URL-encoded, JSON-escaped and HTML-escaped
    forms; any run of 8 or more of its characters (a key the server cut, or quoted in
    part) is replaced too. Redact before cutting a text to length: a key cut in two is
    no longer found whole.
    """
    if (len(text) < _MIN_SECRET_PIECE and len(text) < len(secret)) or not secret:
        return text  # too short to hold any spelling of the key, or a piece of one
    for form in _spellings(secret):
        if form in text:
            text = text.replace(form, REDACTED)
    return _mask_pieces(text, secret)


@functools.lru_cache(maxsize=64)
def _clean_message(text: str, secret: str) -> str:
    """``redact`` for a successful answer's message: the same few texts, on every answer."""
    return redact(text, secret)


@functools.lru_cache(maxsize=8)
def _key_pieces(secret: str) -> tuple[re.Pattern[str], frozenset[str]]:
    """Runs of the characters ``secret``'s spellings use, and their 8-character pieces."""
    forms = _spellings(secret)
    pieces = frozenset(
        form[i : i + _MIN_SECRET_PIECE]
        for form in forms
        for i in range(len(form) - _MIN_SECRET_PIECE + 1)
    )
    alphabet = re.escape("".join(sorted(set("".join(forms)))))
    return re.compile(f"[{alphabet}]{{{_MIN_SECRET_PIECE},}}"), pieces


def _mask_pieces(text: str, secret: str) -> str:
    """Replace every run of 8 or more characters of ``secret`` (any spelling) in ``text``.

    Only stretches made of the key's characters are looked at, so a text with none
    costs one regular-expression scan.
    """
    runs, pieces = _key_pieces(secret)
    size = _MIN_SECRET_PIECE
    kept: list[str] = []
    done = 0
    for run in runs.finditer(text):
        at, end = run.span()
        while at <= end - size:
            if text[at : at + size] not in pieces:
                at += 1
                continue
            last = at
            while last + 1 <= end - size and text[last + 1 : last + 1 + size] in pieces:
                last += 1
            kept.append(text[done:at])
            kept.append(REDACTED)
            done = at = last + size
    if not kept:
        return text
    kept.append(text[done:])
    return "".join(kept)


# --------------------------------------------------------------------------- requests


def normalize_base_url(base_url: str, *, allow_insecure_http: bool) -> str:
    """Return the site root (no trailing slash) from a root or a ``.../api/v2/`` URL.

    Raises:
        ConfigurationError: the URL is not http(s), or is plain http to a non-loopback
            host without ``allow_insecure_http``.
    """
    parts = urllib.parse.urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"base_url must be an http(s) URL such as https://crm.example.com, got {base_url!r}"
        )
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback(parts.hostname):
        raise ConfigurationError(
            "refusing to send the API key over plain http to "
            f"{parts.hostname}; use https, or pass allow_insecure_http=True if you must"
        )
    path = parts.path.rstrip("/")
    if path.endswith("/api/v2"):
        path = path[: -len("/api/v2")]
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


_PAGE_SUFFIXES = (".php", ".html", ".htm", ".asp", ".aspx", ".jsp", ".cgi")


def base_url_problem(site_root: str) -> str | None:
    """Say why ``site_root`` cannot be a CloudOnex site root, or None if it may be one."""
    parts = urllib.parse.urlsplit(site_root)
    path = parts.path.rstrip("/")
    segments = path.split("/")
    last = segments[-1].lower()
    versioned = last in ("v1", "v2", "v3") and segments[-2:-1] == ["api"]
    if last == "api" or versioned:
        cut = len(segments) - (2 if versioned else 1)
        root = urllib.parse.urlunsplit(parts._replace(path="/".join(segments[:cut])))
        return (
            f"the base URL ends in /{last}: CloudOnex serves its API at <site root>/api/v2/, "
            f"so requests would go to {site_root}/api/v2/...; give the site root "
            f"({root}) or the full .../api/v2/ URL"
        )
    if last.endswith(_PAGE_SUFFIXES):
        root = urllib.parse.urlunsplit(parts._replace(path="/".join(segments[:-1])))
        return (
            f"the base URL points at a web page ({segments[-1]}); give the site root, the "
            f"address you open CloudOnex at without any page name ({root})"
        )
    return None


def _wrong_base(request: Request | None) -> str | None:
    """Why the site root ``request`` was built on cannot be one (see base_url_problem)."""
    if request is None:
        return None
    url = request.url
    at = url.find("/" + API_PREFIX)
    return base_url_problem(url[:at] if at >= 0 else url.rstrip("/"))


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (plain http is allowed there)."""
    return host in ("localhost", "::1") or host.startswith("127.")


_ID_PATTERN = re.compile(r"[0-9]+")


def format_id(record_id: int | str) -> str:
    """Return a record id as a path segment, refusing anything but digits.

    Raises:
        ConfigurationError: the id is not a non-negative int or a string of digits.
    """
    if isinstance(record_id, bool) or not isinstance(record_id, (int, str)):
        raise ConfigurationError(f"a record id must be an int, got {type(record_id).__name__}")
    text = str(record_id)
    if not _ID_PATTERN.fullmatch(text):
        raise ConfigurationError(f"a record id must be digits only, got {text!r}")
    return text


# Request, RawResponse, Envelope and RateLimitInfo are made for every call: plain
# slotted classes (attrs.define) cost less than half as much to build as frozen ones,
# which showed in the throughput benchmark. Treat them as read-only.


_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


@attrs.define
class Request:
    """One HTTP request, ready to send. ``params``, ``headers`` may hold the key: never shown.

    ``headers`` are this request's own (a body's Content-Type); every request also
    carries :func:`session_headers`, which the transport sets once on its session.
    ``body_encoding`` is how the body was encoded (None: no body) and ``profile`` the
    server profile it was built for; both only shape error messages.
    """

    method: str
    url: str
    display_url: str
    params: tuple[tuple[str, str], ...] = attrs.field(repr=False, default=())
    headers: Mapping[str, str] = attrs.field(repr=False, default=_NO_HEADERS)
    body: bytes | None = attrs.field(repr=False, default=None)
    body_encoding: BodyEncoding | None = None
    profile: str = "documented"
    path: str = ""
    #: Scrubbed from every text read back (a server may echo the key). Never shown.
    secret: str = attrs.field(default="", repr=False)
    #: Seconds from now beyond which a Reset, Retry-After or clock skew is garbage.
    horizon: float = DEFAULT_HORIZON
    #: Seconds for this request's whole exchange; None: the transport's own timeout.
    timeout: float | None = None

    @property
    def resource(self) -> str:
        """The resource the path names (``"customers"`` for ``customers/7``)."""
        return self.path.split("/", 1)[0]

    @property
    def idempotent(self) -> bool:
        """Whether sending it twice has the same effect as once."""
        return self.method in IDEMPOTENT_METHODS


def session_headers(*, api_key: str, auth: AuthMode, user_agent: str) -> dict[str, str]:
    """Return the headers every request carries; with ``auth="bearer"``, the key's too."""
    headers = {"Accept": "application/json", "User-Agent": user_agent}
    if auth == "bearer":
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def build_request(
    *,
    site_root: str,
    api_key: str,
    auth: AuthMode,
    method: str,
    path: str,
    params: Mapping[str, object] | None = None,
    body: JSONValue | Mapping[str, object] = None,
    body_encoding: BodyEncoding = "json",
    route_style: RouteStyle | None = None,
    profile: str = "documented",
    horizon: float = DEFAULT_HORIZON,
) -> Request:
    """Build the request for ``method`` on ``path`` (relative to ``/api/v2/``).

    ``route_style="path"`` addresses ``/api/v2/PATH``; ``"ng"`` addresses
    ``/?ng=api/v2/PATH``, the entry point that works on hosts without URL rewriting.
    Unset, it follows ``auth``: the vendor page's query-string method is
    ``/?api_key=KEY&ng=api/v2/PATH``. With ``auth="bearer"`` the key travels in
    :func:`session_headers`, else as the first query parameter. ``horizon`` bounds the
    times the answer may name (see :class:`Request`).
    """
    method = method.upper()
    path = path.strip("/")
    if route_style is None:
        route_style = "ng" if auth == "query" else "path"
    query = (
        [(str(k), _query_value(v)) for k, v in params.items() if v is not None] if params else []
    )
    if route_style == "ng":
        # The ng route takes no leading slash and no empty segment ("api/v2//x" is
        # answered "Unknown resources requested!" by shipped servers).
        url = f"{site_root}/"
        query = [("ng", API_PREFIX + path), *query]
    else:
        url = f"{site_root}/{API_PREFIX}{path}"
    display_url = f"{url}?{urllib.parse.urlencode(query, safe='/')}" if query else url
    if auth == "query":
        query.insert(0, ("api_key", api_key))
    if body is None:
        # Every field given in order: a class called with keywords costs twice as much.
        return Request(
            method,
            url,
            display_url,
            tuple(query),
            _NO_HEADERS,
            None,
            None,
            profile,
            path,
            api_key,
            horizon,
        )
    if body_encoding == "form":
        payload = urllib.parse.urlencode(list(encode_form(body))).encode()
        content_type = "application/x-www-form-urlencoded"
    else:
        payload = encode_json(body)
        content_type = "application/json"
    return Request(
        method,
        url,
        display_url,
        tuple(query),
        {"Content-Type": content_type},
        payload,
        body_encoding,
        profile,
        path,
        api_key,
        horizon,
    )


def _query_value(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")  # plain digits: "1E+3" is not an amount PHP reads
    return str(value)


def _json_default(value: object) -> object:
    # Money goes out as a string of plain digits: JSON numbers would pass through float
    # somewhere along the way, and PHP servers read form-style strings anyway.
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    raise TypeError(f"cannot send a {type(value).__name__} as JSON")


def encode_json(body: object) -> bytes:
    """Encode a request body as compact UTF-8 JSON (Decimal and dates as strings)."""
    return json.dumps(body, default=_json_default, separators=(",", ":")).encode()


def encode_form(body: object, prefix: str = "") -> Iterable[tuple[str, str]]:
    """Flatten a body into PHP-style form fields (``items[0][description]``)."""
    if isinstance(body, Mapping):
        for key, value in body.items():
            yield from encode_form(value, f"{prefix}[{key}]" if prefix else str(key))
    elif isinstance(body, (list, tuple)):
        for index, value in enumerate(body):
            yield from encode_form(value, f"{prefix}[{index}]")
    elif body is not None:
        yield prefix, _query_value(body)


# --------------------------------------------------------------------------- responses


@attrs.define
class RawResponse:
    """What came back: status, headers and the body bytes, with the request it answers.

    A transport returns it; the client attaches the ``request`` if the transport did
    not, so error messages can name it (method and key-free URL).
    """

    status: int
    headers: Mapping[str, str]
    body: bytes
    request: Request | None = attrs.field(default=None, repr=False)

    @property
    def method(self) -> str:
        """The request's method, or "" if unknown."""
        return self.request.method if self.request is not None else ""

    @property
    def url(self) -> str:
        """The request's URL without the API key, or "" if unknown."""
        return self.request.display_url if self.request is not None else ""


@attrs.define
class Failure:
    """An answer that is a failure, read once against the time it arrived.

    Attributes:
        error: the library error it amounts to.
        budget: the budget it announced (``X-RateLimit-*``), if any.
        retry_after: seconds the server asked to wait (Retry-After on a 429 or 503).
    """

    error: CloudOnexError
    budget: RateLimitInfo | None = None
    retry_after: float | None = None


@attrs.define
class Envelope:
    """A successful answer: its ``data`` and ``message``, the top-level object, the budget.

    ``legacy`` marks shipped code's ``{"error": false, ...}`` answer (not the envelope);
    ``budget`` is what the answer's ``X-RateLimit-*`` headers announced, if anything.
    """

    data: JSONValue
    message: str | None = None
    top: Mapping[str, JSONValue] = attrs.field(repr=False, default=MappingProxyType({}))
    legacy: bool = False
    budget: RateLimitInfo | None = attrs.field(default=None, repr=False)

    @property
    def meta(self) -> dict[str, JSONValue]:
        """Every top-level key beside the envelope's own (``meta``, ``links``, ...)."""
        return {k: v for k, v in self.top.items() if k not in _ENVELOPE_KEYS}


_ENVELOPE_KEYS = frozenset({"success", "error", "data", "message", "errors"})
_NOT_FOUND = re.compile(r"not found", re.IGNORECASE)


def _not_json(constant: str) -> JSONValue:
    raise ValueError(f"{constant} is not a JSON value")


# NaN and Infinity are not JSON (RFC 8259): refused, so no amount can be one.
_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_not_json)


def decode_json(body: bytes) -> JSONValue:
    """Decode UTF-8 JSON with fractional numbers as Decimal. Raises ValueError on bad input."""
    value: JSONValue = _DECODER.decode(body.decode("utf-8"))
    return value


def parse_response(raw: RawResponse, now: float) -> Envelope | Failure:
    """Read an answer once: its Envelope (with the budget it announced), or its Failure.

    ``now`` is the local epoch time the answer arrived: Reset values given as seconds
    from now, Retry-After as an HTTP date and the Date header's clock skew are all read
    against it. Never raises a library error: it returns it, in a Failure.
    """
    horizon = raw.request.horizon if raw.request is not None else DEFAULT_HORIZON
    budget = RateLimitInfo.from_headers(raw.headers, now, horizon)
    try:
        envelope = read_envelope(raw, now)
    except CloudOnexError as error:
        retry_after = (
            parse_retry_after(raw.headers, now, horizon) if raw.status in (429, 503) else None
        )
        return Failure(error, budget, retry_after)
    envelope.budget = budget
    return envelope


def unwrap(answer: Envelope | Failure) -> Envelope:
    """Return the Envelope, or raise the Failure's error."""
    if isinstance(answer, Failure):
        raise answer.error
    return answer


def read_envelope(raw: RawResponse, now: float) -> Envelope:
    """Turn an answer into an Envelope, or raise the matching error.

    Accepts the documented ``{success, data, message}`` envelope and the shapes that
    shipped CloudOnex servers send: a bare object or array, ``{"error": false, ...}``
    on create, and ``{"error": true, "message": ...}`` failures at status 200.
    """
    try:
        # raw_decode: one Python call less than decode(), which most answers allow
        text = raw.body.decode("utf-8")
        decoded, end = _DECODER.raw_decode(text)
        if end != len(text) and text[end:].strip():
            raise ValueError("more after the JSON document")
    except (ValueError, RecursionError):  # UnicodeDecodeError included; absurd nesting
        found, decoded = decode_answer(raw)
        if not found:
            return _parse_non_json(raw, now)
    if raw.status >= 400:
        body_obj = decoded if isinstance(decoded, dict) else {}
        said = _message_of(body_obj, _secret(raw))
        raise _failure(raw, said or _status_phrase(raw.status), body_obj, now)
    if not isinstance(decoded, dict):
        return Envelope(decoded)  # a bare array (legacy listing) or scalar
    if decoded.get("success") is False or decoded.get("error") is True:
        raise _failure(
            raw,
            _message_of(decoded, _secret(raw)) or "the server reported a failure without a message",
            decoded,
            now,
        )
    message = decoded.get("message")
    message_text = _clean_message(message, _secret(raw)) if isinstance(message, str) else None
    if "success" in decoded or "data" in decoded:
        return Envelope(decoded.get("data"), message_text, decoded)
    if "error" in decoded:  # legacy create answer: {"error": false, "contact_id": "12", ...}
        data = {k: v for k, v in decoded.items() if k not in _ENVELOPE_KEYS}
        return Envelope(data, message_text, legacy=True)
    return Envelope(decoded)  # a bare record


def decode_answer(raw: RawResponse) -> tuple[bool, JSONValue]:
    """Decode a JSON body, also behind PHP diagnostics; (False, None) if it is not JSON."""
    try:
        return True, decode_json(raw.body)
    except (ValueError, RecursionError):
        pass
    found, decoded = json_after_php_diagnostics(raw.body)
    if found:
        logger.warning(
            "%s %s: the server printed a PHP warning or notice before its JSON answer; "
            "the answer was read, but check the server's error log",
            raw.method,
            raw.url,
        )
    return found, decoded


# The vendor code's words for "this build has no such endpoint" (api-notes).
_UNSUPPORTED_MESSAGES = ("unknown resources requested", "unknown method")


def _secret(raw: RawResponse) -> str:
    return raw.request.secret if raw.request is not None else ""


def _failure(
    raw: RawResponse, message: str, body: Mapping[str, JSONValue], now: float
) -> CloudOnexError:
    """The error for a failure answer: unsupported, or the APIError of its status.

    The server's words are quoted in the error, with the API key scrubbed out: a
    server may echo the key it was sent.
    """
    request = raw.request
    message = redact(message, _secret(raw))
    lowered = message.lower()
    if raw.status in (200, 404, 405) and any(m in lowered for m in _UNSUPPORTED_MESSAGES):
        resource = request.resource if request else ""
        profile = request.profile if request else ""
        what = (
            f"{raw.method} on this path" if "method" in lowered else (resource or "this endpoint")
        )
        # Through /api/v2/ at a wrong root, the API (reached by a rewrite) knows no such
        # path; through ?ng= a JSON answer means the API is right there.
        wrong_base = _wrong_base(request) if request and "/" + API_PREFIX in request.url else None
        if wrong_base and resource == "customers":  # every build has them: the wrong address
            return RouteNotFoundError(
                f"{raw.method} {raw.url} answered {message!r}: no CloudOnex API answers at "
                f"this address: {wrong_base}",
                status=raw.status,
                method=raw.method,
                url=raw.url,
            )
        maybe = f"; or the base URL is wrong: {wrong_base}" if wrong_base else ""
        return UnsupportedError(
            f"{raw.method} {raw.url} answered {message!r}: this server does not offer "
            f"{what} (profile {profile!r}); shipped CloudOnex 4.x servers have customers, "
            "customer/<id>, invoice/<id> and users only, and profile='auto' finds out "
            f"which kind of server this is{maybe} (`cloudonex doctor` tells which)",
            resource=resource,
            operation=raw.method,
            profile=profile,
            method=raw.method,
            url=raw.url,
        )
    errors = _errors_of(body, _secret(raw))  # scrubbed before they were cut
    if (
        request is not None
        and request.body_encoding == "json"
        and raw.status == 200
        and body.get("error") is True
    ):
        # Shipped code answers {"error": true} at 200, and reads form fields only: the
        # JSON body was never looked at, whatever the message says is missing.
        message = (
            f"{message} (the server reads form fields only and ignored the JSON body: "
            "use body_encoding='form', or profile='shipped' or 'auto')"
        )
    return error_for(raw, message, errors, now)


_PHP_DIAGNOSTIC = re.compile(r"(?:<b>)?(?:Warning|Notice|Deprecated)(?:</b>)?:", re.IGNORECASE)
_JSON_START = re.compile(r"[{\[]")
_MAX_SALVAGE_TRIES = 8  # brackets inside the warnings themselves; bounds the work on junk


def json_after_php_diagnostics(body: bytes) -> tuple[bool, JSONValue]:
    """Find a JSON answer that PHP warnings or notices were printed in front of.

    Hosts with ``display_errors`` on may print ``<br /><b>Warning</b>: ...`` before the
    JSON (api-notes). Returns (True, value) when the body starts with such a diagnostic
    and a JSON document fills the rest of it; else (False, None). Fatal errors and HTML
    pages are not salvaged: there, no answer follows.
    """
    text = body.decode("utf-8", errors="replace")
    first = _PHP_DIAGNOSTIC.search(text, 0, 200)
    if first is None:
        return False, None
    for tries, start in enumerate(_JSON_START.finditer(text, first.end())):
        if tries == _MAX_SALVAGE_TRIES:
            break
        try:
            value, end = _DECODER.raw_decode(text, start.start())
        except (ValueError, RecursionError):
            continue
        if not text[end:].strip():
            return True, value
    return False, None


def _parse_non_json(raw: RawResponse, now: float) -> Envelope:
    """Answer for a body that is empty or not JSON: an error, or nothing for a 204."""
    empty = not raw.body or raw.body.isspace()
    if raw.status == 404:
        # The API answers JSON; a page of the web server's own means the request never
        # reached CloudOnex, which says nothing about any record.
        advice = _wrong_base(raw.request) or (
            "Check the base URL; hosts without URL rewriting serve the API only through "
            "/?ng=api/v2/..., so pass route_style='ng' (or profile='auto'); `cloudonex "
            "doctor` tells which settings this server needs"
        )
        raise RouteNotFoundError(
            f"{raw.method} {raw.url} answered HTTP 404 with "
            f"{'an empty body' if empty else 'a page that is not the API'}: no CloudOnex API "
            f"answers at this URL. {advice[0].upper()}{advice[1:]}",
            status=404,
            body_excerpt="" if empty else excerpt(raw.body, _secret(raw)),
            method=raw.method,
            url=raw.url,
        )
    if raw.status >= 400:
        message = _status_phrase(raw.status) if empty else excerpt(raw.body, _secret(raw))
        raise error_for(raw, message, {}, now)
    if empty and raw.status == 204:
        return Envelope(None)
    if empty and raw.method in ("PUT", "DELETE", "PATCH"):
        request = raw.request
        resource = request.resource if request else ""
        profile = request.profile if request else ""
        verb = {"PUT": "updating", "DELETE": "deleting"}.get(raw.method, raw.method)
        raise UnsupportedError(
            f"{raw.method} {raw.url} was answered with an empty HTTP {raw.status}: the server "
            f"accepted the request and did nothing (shipped CloudOnex 4.x code does this for "
            f"verbs it does not implement), so this server does not support {verb} "
            f"{resource or 'this record'} (profile {profile!r}); nothing was changed",
            resource=resource,
            operation=raw.method,
            profile=profile,
            method=raw.method,
            url=raw.url,
        )
    if empty:
        raise ResponseParseError(
            f"{raw.method} {raw.url} answered HTTP {raw.status} with an empty body, so the "
            "server did not confirm the request; shipped CloudOnex 4.x servers answer this "
            "way on paths they do not handle (profile='auto' detects them)",
            status=raw.status,
            method=raw.method,
            url=raw.url,
        )
    quoted = excerpt(raw.body, _secret(raw))
    advice = _wrong_base(raw.request) or "check the base URL and the server's error log"
    moved = raw.headers.get("Location") if 300 <= raw.status < 400 else None
    if moved:  # a login page, or a site that moved (a Location never holds the key)
        advice = f"it redirects to {redact(moved, _secret(raw))}: {advice}"
    raise ResponseParseError(
        f"{raw.method} {raw.url} answered HTTP {raw.status} with a body that is not JSON "
        f"(first characters: {quoted!r}); {advice}",
        status=raw.status,
        body_excerpt=excerpt(raw.body, _secret(raw)),
        method=raw.method,
        url=raw.url,
    )


def _status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "no message"


def excerpt(body: bytes, secret: str = "") -> str:
    """Return the first characters of a body, for error messages (``secret`` scrubbed).

    The key is scrubbed before the text is cut, from enough of the body (up to four
    bytes a character) that a key starting within the excerpt is found whole.
    """
    head = body[: 4 * (EXCERPT_CHARS + _longest_spelling(secret))].decode("utf-8", "replace")
    return redact(head, secret)[:EXCERPT_CHARS].strip()


# The server's words are scrubbed of the key (``secret``) before they are cut to length.


def _message_of(body: Mapping[str, JSONValue], secret: str = "") -> str:
    message = body.get("message")
    if isinstance(message, list):
        text = "; ".join(_text(m, secret) for m in message[:MAX_FIELD_ERRORS])
    else:
        text = _text(message, secret) if message not in (None, "") else ""
    return text[:MAX_MESSAGE_CHARS]


def _errors_of(body: Mapping[str, JSONValue], secret: str = "") -> dict[str, str]:
    errors = body.get("errors")
    if isinstance(errors, dict):
        pairs = list(errors.items())[:MAX_FIELD_ERRORS]
        return {_text(k, secret)[:100]: _flatten_message(v, secret) for k, v in pairs}
    if isinstance(errors, list):
        return {
            str(i): _flatten_message(v, secret) for i, v in enumerate(errors[:MAX_FIELD_ERRORS])
        }
    message = body.get("message")
    if isinstance(message, list):  # legacy: every problem in order, no field names
        return {
            str(i): _flatten_message(v, secret) for i, v in enumerate(message[:MAX_FIELD_ERRORS])
        }
    return {}


def _flatten_message(value: JSONValue, secret: str = "") -> str:
    if isinstance(value, list):
        return "; ".join(_text(v, secret) for v in value[:MAX_FIELD_ERRORS])[:MAX_MESSAGE_CHARS]
    return _text(value, secret)[:MAX_MESSAGE_CHARS]


def _text(value: object, secret: str = "") -> str:
    """A server's value as short text (scrubbed, then cut): nested structures are not
    walked whole."""
    if isinstance(value, (list, dict)):
        return f"<a JSON {'list' if isinstance(value, list) else 'object'}>"
    text = value if isinstance(value, str) else str(value)
    # Enough of it that a key starting within the kept part is found whole.
    text = text[: MAX_MESSAGE_CHARS + _longest_spelling(secret)]
    return redact(text, secret)[:MAX_MESSAGE_CHARS]


_HINTS = {
    401: "check the key under Settings → API Access, and use auth='query' if your web "
    "server strips the Authorization header",
    403: "the key is valid but lacks permission for this; check its permissions",
    404: "check the id and the base URL",
    429: "the hourly budget is spent; wait until it resets",
}


def error_for(raw: RawResponse, message: str, errors: Mapping[str, str], now: float) -> APIError:
    """Return the APIError subclass for a failed answer (not raised: the caller raises).

    ``now`` (local epoch seconds) reads a 429's Retry-After and Reset.
    """
    status = raw.status
    where = f"{raw.method} {raw.url}".strip()
    text = f"{where} answered HTTP {status}: {message}" if where else f"HTTP {status}: {message}"
    hint = _HINTS.get(status)
    if hint:
        text = f"{text}; {hint}"
    if status == 500 and not raw.body and raw.request is not None:
        if raw.request.profile == "shipped" and raw.method == "GET" and "/" in raw.request.path:
            text += (
                "; shipped CloudOnex 4.x code also fails this way when no record has this id, "
                "so check the id"
            )
    if status == 429:
        horizon = raw.request.horizon if raw.request is not None else DEFAULT_HORIZON
        retry_after = parse_retry_after(raw.headers, now, horizon)
        info = RateLimitInfo.from_headers(raw.headers, now, horizon)
        reset_at = (
            datetime.fromtimestamp(info.reset_at, timezone.utc)
            if info is not None and info.reset_at is not None
            else None
        )
        return RateLimitError(
            text,
            retry_after=retry_after,
            reset_at=reset_at,
            limit=info.limit if info else None,
            remaining=info.remaining if info else None,
            errors=errors,
            headers=raw.headers,
            method=raw.method,
            url=raw.url,
        )
    cls: type[APIError]
    if status >= 500:
        cls = ServerError
    elif status == 401:
        cls = AuthenticationError
    elif status == 403:
        cls = PermissionDeniedError
    elif status == 404 or (status < 300 and raw.method != "POST" and _NOT_FOUND.search(message)):
        cls = NotFoundError
    elif status in (400, 422) or (status < 300 and (errors or raw.method in ("POST", "PUT"))):
        cls = ValidationError
    else:
        cls = APIError
    return cls(
        text, status=status, errors=errors, headers=raw.headers, method=raw.method, url=raw.url
    )


def created_id(data: object, keys: Sequence[str] = ("id",)) -> int | None:
    """Find the new record's id in a create answer, under the first of ``keys`` present.

    The documented answer names it ``id``; shipped code uses ``contact_id`` or
    ``user_id``. Only the named keys are read: a record's ``customer_id`` is not its id.
    """
    if not isinstance(data, Mapping):
        return None
    for key in keys:
        value = data.get(key)
        if isinstance(value, str) and value.strip().isascii() and len(value.strip()) <= 20:
            value = int(value) if _ID_PATTERN.fullmatch(value.strip()) else None
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ID:
            return value
    return None


PROBE_PATH = "ping"
"""What ``profile="auto"`` asks (through ``?ng=``): a path neither kind of server has, so
both answer at once with a small JSON failure whose shape tells them apart."""


def detect_profile(raw: RawResponse, now: float) -> Envelope | Failure:
    """Read the probe's answer: an Envelope whose ``data`` names the profile, or a Failure."""
    horizon = raw.request.horizon if raw.request is not None else DEFAULT_HORIZON
    budget = RateLimitInfo.from_headers(raw.headers, now, horizon)
    try:
        name = profile_of(raw, now)
    except CloudOnexError as error:
        retry_after = (
            parse_retry_after(raw.headers, now, horizon) if raw.status in (429, 503) else None
        )
        return Failure(error, budget, retry_after)
    return Envelope(name, budget=budget)


def profile_of(raw: RawResponse, now: float) -> ProfileName:
    """Tell from an answer to the probe which kind of server sent it.

    The documented API answers ``{"success": ...}`` and sends ``X-RateLimit-*``; the
    shipped 4.x code answers ``{"error": ...}`` or a bare array, without budget headers.

    Raises:
        AuthenticationError, RateLimitError, ServerError: as for any call.
        RouteNotFoundError, ResponseParseError: the answer is not the API's JSON.
    """
    found, decoded = decode_answer(raw)
    if not found:
        _parse_non_json(raw, now)  # raises for anything but a 204
        return "documented"
    if raw.status in (401, 403, 429) or raw.status >= 500:
        body = decoded if isinstance(decoded, dict) else {}
        message = _message_of(body, _secret(raw)) or _status_phrase(raw.status)
        raise _failure(raw, message, body, now)
    if _case_insensitive(raw.headers).get(_REMAINING) is not None:
        return "documented"
    if isinstance(decoded, list):
        return "shipped"
    if isinstance(decoded, dict) and "success" not in decoded and "error" in decoded:
        return "shipped"
    return "documented"


# --------------------------------------------------------------------------- rate limits


@attrs.define
class RateLimitInfo:
    """The budget a response announced, with Reset on the local clock.

    Attributes:
        limit: requests per window (X-RateLimit-Limit), when sent.
        remaining: requests left in this window (X-RateLimit-Remaining).
        reset_epoch: the server's Reset value as an epoch (seconds); identifies the window.
        reset_at: the same moment on the local clock (corrected by the Date header's skew).
        relative: Reset was sent as seconds from now, so ``reset_epoch`` is only good
            to about a second (two answers of one window may differ by one).
    """

    remaining: int
    limit: int | None = None
    reset_epoch: float | None = None
    reset_at: float | None = None
    relative: bool = False

    @classmethod
    def from_headers(
        cls, headers: Mapping[str, str], now: float, horizon: float = DEFAULT_HORIZON
    ) -> RateLimitInfo | None:
        """Read the X-RateLimit-* headers; None (with a debug log line) if absent or garbage.

        A Reset below 10^9 is read as seconds from ``now`` rather than an epoch, since
        some servers send it that way; an epoch is moved onto the local clock by the
        Date header's skew. ``now`` is the local epoch time the answer arrived. A Reset
        more than ``horizon`` seconds from now, a negative Remaining, or a Limit or
        Remaining beyond a billion are not a budget but garbage: the configured budget
        is kept.
        """
        if type(headers) is not CIMultiDictProxy:  # what aiohttp gives is already one
            headers = _case_insensitive(headers)
        raw_remaining = headers.get(_REMAINING)
        if raw_remaining is None:
            return None
        raw_limit = headers.get(_LIMIT)
        raw_reset = headers.get(_RESET)
        try:
            remaining = int(raw_remaining)  # int() and float() ignore surrounding whitespace
            limit, reset = _limit_and_reset(raw_limit, raw_reset)
        except ValueError:
            _garbage("garbled X-RateLimit headers", headers)
            return None
        limit_ok = limit is None or 1 <= limit <= MAX_BUDGET
        if not limit_ok or not 0 <= remaining <= MAX_BUDGET:
            _garbage("X-RateLimit numbers out of range", headers)
            return None
        if reset is None:
            return cls(remaining, limit)
        if not math.isfinite(reset):
            _garbage("an X-RateLimit-Reset that is not finite", headers)
            return None
        if reset < 1e9:
            if not 0 <= reset <= horizon:
                _garbage("an X-RateLimit-Reset out of range", headers)
                return None
            reset_at = now + reset
            return cls(remaining, limit, float(round(reset_at)), reset_at, True)
        date = headers.get(_DATE)
        reset_at = reset + clock_skew(date, now, horizon) if date else reset
        if abs(reset_at - now) > horizon:
            _garbage("an X-RateLimit-Reset implausibly far from now", headers)
            return None
        return cls(remaining, limit, reset, reset_at)


@functools.lru_cache(maxsize=16)  # the same on every answer of a window: converted once
def _limit_and_reset(
    raw_limit: str | None, raw_reset: str | None
) -> tuple[int | None, float | None]:
    """X-RateLimit-Limit and -Reset as numbers (None where absent); ValueError if garbled."""
    return (
        None if raw_limit is None else int(raw_limit),
        None if raw_reset is None else float(raw_reset),
    )


def _garbage(what: str, headers: Mapping[str, str]) -> None:
    logger.debug(
        "ignoring %s (the configured budget holds): %r",
        what,
        {k: v for k, v in headers.items() if k.lower().startswith(("x-ratelimit", "date"))},
    )


# Header names as istr: case-insensitive lookups skip folding the name each time.
_REMAINING, _LIMIT, _RESET, _DATE = map(
    istr, ("X-RateLimit-Remaining", "X-RateLimit-Limit", "X-RateLimit-Reset", "Date")
)


def _case_insensitive(headers: Mapping[str, str]) -> Mapping[str, str]:
    """Return ``headers`` if lookups ignore case (as aiohttp's do), else a copy whose do."""
    if isinstance(headers, (CIMultiDictProxy, CIMultiDict)):  # what aiohttp gives
        return headers
    return CIMultiDict(headers)


def clock_skew(date_header: str | None, now: float, horizon: float = DEFAULT_HORIZON) -> float:
    """Return local time minus the server's, from a Date header.

    0 when it is small (within the header's resolution), unknown, or implausible
    (more than ``horizon`` seconds: a server clock decades off is garbage, not a fact).
    """
    server_now = http_date(date_header) if date_header else None
    if server_now is None:
        return 0.0
    skew = now - server_now
    if abs(skew) > horizon:
        logger.debug("ignoring a Date header %.0f s off the local clock", skew)
        return 0.0
    return skew if abs(skew) >= MIN_CORRECTED_SKEW else 0.0


@functools.lru_cache(maxsize=16)  # a Date header changes once a second: parse it once
def http_date(raw: str) -> float | None:
    """An HTTP date (a Date or Retry-After header) as epoch seconds; None if unreadable."""
    if len(raw) > 64:  # an HTTP date is about 29 characters
        return None
    try:
        moment = parsedate_to_datetime(raw).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError, AttributeError):
        return None
    return moment if math.isfinite(moment) else None


def parse_retry_after(
    headers: Mapping[str, str], now: float, horizon: float = DEFAULT_HORIZON
) -> float | None:
    """Return Retry-After in seconds (RFC 9110: a delay in seconds or an HTTP date), or None.

    None too for garbage: not finite, or more than ``horizon`` seconds away.
    """
    headers = _case_insensitive(headers)
    raw = headers.get("Retry-After", "").strip()
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        moment = http_date(raw)
        if moment is None:
            return None
        # The date is on the server's clock: move it onto ours by the Date header.
        seconds = moment + clock_skew(headers.get(_DATE), now, horizon) - now
    if not math.isfinite(seconds) or seconds > horizon:
        logger.debug("ignoring an implausible Retry-After: %r", raw[:64])
        return None
    return max(0.0, seconds)


# --------------------------------------------------------------------------- retries


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How hard to try again after a failure that may be transient.

    Attributes:
        attempts: tries in all, the first included (1 disables retries).
        backoff_base: seconds of the first backoff ceiling; it doubles each try.
        backoff_max: the ceiling's upper bound, in seconds.
        retry_statuses: statuses retried for idempotent methods (GET, PUT, DELETE).
    """

    attempts: int = 4
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    retry_statuses: frozenset[int] = frozenset({500, 502, 503, 504})


@attrs.frozen
class RetryDecision:
    """Whether to send again, after how many seconds, and why."""

    retry: bool
    delay: float = 0.0
    reason: str = ""


def backoff(policy: RetryPolicy, attempt: int, rng: random.Random) -> float:
    """Exponential backoff with full jitter for the given 1-based attempt."""
    ceiling = min(policy.backoff_max, policy.backoff_base * 2 ** (attempt - 1))
    return rng.uniform(0.0, ceiling)


def retry_decision(
    *,
    method: str,
    attempt: int,
    error: CloudOnexError,
    policy: RetryPolicy,
    rng: random.Random,
    retry_after: float | None = None,
) -> RetryDecision:
    """Decide whether the failed ``attempt`` (1-based) of ``method`` is sent again.

    A POST is only sent again where the server certainly did not act on it: the
    request never left, a 429, or a 503 with Retry-After (``retry_after``, seconds,
    as :func:`parse_response` read it, HTTP dates included).
    """
    if attempt >= policy.attempts:
        return RetryDecision(False, reason="out of attempts")
    if isinstance(error, RateLimitError):
        # The limiter is paused until Retry-After/Reset; acquiring again waits for it.
        return RetryDecision(True, 0.0, "429: not processed")
    if isinstance(error, ResponseTooLargeError):
        return RetryDecision(False, reason="the answer is too large: it would be again")
    if isinstance(error, TransportError) and not error.request_sent:
        return RetryDecision(True, backoff(policy, attempt, rng), "not sent")
    if isinstance(error, ServerError) and error.status == 503 and retry_after is not None:
        # The server said when it will take the request: not before (RFC 9110 §10.2.3).
        return RetryDecision(True, retry_after, "503 Retry-After")
    if method.upper() not in IDEMPOTENT_METHODS:
        return RetryDecision(False, reason="not idempotent")
    if isinstance(error, TransportError):
        return RetryDecision(True, backoff(policy, attempt, rng), "transport")
    if isinstance(error, APIError) and error.status in policy.retry_statuses:
        return RetryDecision(True, backoff(policy, attempt, rng), f"HTTP {error.status}")
    return RetryDecision(False, reason="not transient")


def may_have_acted(error: CloudOnexError) -> bool:
    """Whether the server may have acted on a request that ended with ``error``."""
    return (
        (isinstance(error, TransportError) and error.request_sent)
        or isinstance(error, ServerError)
        or isinstance(error, ResponseParseError)
    )


def outcome_unknown(
    method: str, error: CloudOnexError, *, earlier: CloudOnexError | None = None
) -> OutcomeUnknownError | None:
    """Return an OutcomeUnknownError if a write may have been processed; else None.

    A POST may have been processed when its (only) attempt ended uncertainly. An
    idempotent write (PUT, DELETE) retried after an uncertain attempt (``earlier``) may
    have been processed by that attempt, whatever the last one says, unless the last
    one found no such record.
    """
    if isinstance(error, OutcomeUnknownError):
        return None
    if method.upper() in IDEMPOTENT_METHODS:
        if method.upper() in ("GET", "HEAD", "OPTIONS") or earlier is None:
            return None
        if isinstance(error, NotFoundError) or may_have_acted(error):
            return None  # gone, or (for a retried write) uncertain in its own right
        reason = f"an earlier attempt may have been processed ({earlier.message})"
        url = getattr(error, "url", "")
        return OutcomeUnknownError(
            f"{method} {url}: {reason}, and the last one failed ({error.message}); look "
            "the record up before sending it again",
            method=method,
            url=url,
            reason=reason,
        )
    if not may_have_acted(error):
        return None
    url = getattr(error, "url", "")
    if isinstance(error, TransportError):
        reason = error.reason
    elif isinstance(error, ServerError):
        reason = f"the server failed with HTTP {error.status}"
    else:
        reason = f"the answer could not be used ({error.message})"
    return OutcomeUnknownError(
        f"{method} {url}: the request was sent but {reason}; the record may or may not "
        "exist, so look it up (for example with a filtered list) before sending it again",
        method=method,
        url=url,
        reason=reason,
    )


# --------------------------------------------------------------------------- pages

_LIST_KEYS = ("data", "items", "records", "results")


@attrs.frozen
class PageInfo:
    """One listing page: its items and whatever paging facts the server reported."""

    items: Sequence[JSONValue]
    current_page: int | None = None
    total_pages: int | None = None
    total_records: int | None = None
    has_next: bool | None = None


def read_page(envelope: Envelope) -> PageInfo:
    """Extract the items and the paging metadata from a listing answer.

    Reads the documented ``meta: {current_page, total_pages, total_records}`` and the
    common variants (``total``, ``last_page``, ``next`` links, a paginator object in data).
    """
    data = envelope.data
    meta: dict[str, JSONValue] = dict(envelope.meta)
    if isinstance(data, dict):
        inner = next((data[k] for k in _LIST_KEYS if isinstance(data.get(k), list)), None)
        if inner is None:
            raise ResponseParseError(
                "a listing answered with an object that holds no list of records",
                status=200,
            )
        meta.update({k: v for k, v in data.items() if not isinstance(v, list)})
        data = inner
    if data is None:
        data = []
    if not isinstance(data, list):
        raise ResponseParseError("a listing answered with something other than a list", status=200)
    for nested in ("meta", "pagination", "paging"):
        block = meta.get(nested)
        if isinstance(block, dict):
            meta.update(block)
    links = meta.get("links")
    next_link: JSONValue = meta.get("next", meta.get("next_page_url"))
    if isinstance(links, dict) and "next" in links:
        next_link = links["next"]
    has_next = None
    if "next" in meta or "next_page_url" in meta or (isinstance(links, dict) and "next" in links):
        has_next = bool(next_link)
    return PageInfo(
        items=data,
        current_page=_int_of(meta, "current_page", "page", "currentPage", bound=MAX_PAGES),
        total_pages=_int_of(
            meta, "total_pages", "last_page", "totalPages", "pages", bound=MAX_PAGES
        ),
        total_records=_int_of(meta, "total_records", "total", "totalRecords", bound=MAX_RECORDS),
        has_next=has_next,
    )


def _int_of(meta: Mapping[str, JSONValue], *names: str, bound: int) -> int | None:
    """The first of ``names`` that holds a count from 0 to ``bound``; else None."""
    for name in names:
        value = meta.get(name)
        if isinstance(value, bool):
            continue
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
            value = int(value)
        if isinstance(value, int) and 0 <= value <= bound:
            return value
    return None


def known_page_count(info: PageInfo, page_size: int) -> int | None:
    """Return how many pages the listing has, if the server said so.

    ``page_size`` is the number of records a page really holds (what the server
    served, which a silent cap can make smaller than what was asked for).
    """
    if info.total_pages is not None:
        return info.total_pages
    if info.total_records is not None:
        return max(1, math.ceil(info.total_records / page_size))
    return None


def is_last_page(info: PageInfo, page: int, *, seen: int = 0) -> bool:
    """Decide whether ``page`` (1-based) proves that the listing ends with it.

    ``seen`` counts the records of the pages before it. The end is proven by an empty
    page, a "no next page" link, or the totals the server sent (``total_records``
    reached, else ``total_pages``). A page shorter than asked for proves nothing:
    servers cap their page size silently, so without totals the walk goes on until
    a page comes back empty.
    """
    count = len(info.items)
    if count == 0 or info.has_next is False:
        return True
    if info.total_records is not None:
        return seen + count >= info.total_records
    if info.total_pages is not None:
        return page >= info.total_pages
    return False


def page_fingerprint(items: Sequence[JSONValue]) -> tuple[str, ...]:
    """Identify a page by its records' ids (or whole records), to spot a repeated page."""
    return tuple(_item_key(item) for item in items)


def _item_key(item: JSONValue) -> str:
    if isinstance(item, dict):
        record_id = item.get("id")
        if isinstance(record_id, (int, str)) and not isinstance(record_id, bool):
            return f"id:{record_id}"
    try:
        return json.dumps(item, sort_keys=True, default=str)
    except (TypeError, ValueError, RecursionError):
        return repr(item)[:200]
