"""What the answers to a diagnosis mean: one :class:`Finding` per check, without I/O.

:mod:`._doctor` asks the questions; each function here reads their answers (and the
Client's configuration) and says what the server does, what that means, and what to
set. Kept apart so that every judgement can be read, and tested, on its own.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final, Literal

import attrs

from ._config import ClientConfig
from ._profile import AuthMode, ProfileName, RouteStyle, make_profile
from ._protocol import (
    MIN_CORRECTED_SKEW,
    RateLimitInfo,
    RawResponse,
    base_url_problem,
    clock_skew,
    decode_answer,
    excerpt,
    http_date,
    is_loopback,
    redact,
)
from .errors import RequestTimeoutError, ResponseTooLargeError, TransportError

Status = Literal["ok", "info", "warning", "problem"]
Check = Literal[
    "base_url",
    "reachable",
    "tls",
    "clock",
    "auth",
    "routes",
    "profile",
    "config",
    "rate_limit",
    "paging",
    "batch",
    "resources",
    "budget",
    "store",
]
Fix = Mapping[str, "str | float"]

#: Records asked for in the paging check (the listings' default page size).
PAGE_PROBE: Final = 100


def _frozen(fix: Fix) -> Fix:
    """A read-only copy (a Finding is a value: its fix cannot change under it)."""
    return MappingProxyType(dict(fix))


@attrs.frozen
class Finding:
    """One fact about the server, what it means, and what to set.

    Attributes:
        check: what was looked at: ``base_url``, ``reachable``, ``tls``, ``clock``,
            ``auth``, ``routes``, ``profile``, ``config``, ``rate_limit``, ``paging``,
            ``batch``, ``resources``; ``budget`` (the diagnosis had to stop early) or
            ``store`` (the client's budget store, such as Redis, failed).
        status: ``"ok"``; ``"info"`` (worth knowing); ``"warning"`` (works, with a cost
            or a risk); ``"problem"`` (the configuration does not work as set).
        summary: what the server does.
        advice: what it means and what to set ("" when there is nothing to do).
        fix: the Client options that fix a problem, as data (``{"auth": "query"}``):
            ``Client(**fix)`` on top of the rest of the configuration. Empty when no
            option fixes it (a wrong key, a server that is down).
    """

    check: Check
    status: Status
    summary: str
    advice: str = ""
    fix: Fix = attrs.field(factory=dict, hash=False, converter=_frozen)


@attrs.define
class Answer:
    """One answer, read just enough to tell what kind of thing sent it.

    ``kind``: ``api`` (the API's own answer), ``unauthorized`` (401/403), ``unsupported``
    (the API has no such endpoint), ``page`` (not the API: a web page, an empty 404),
    ``failing`` (the server failed: a 5xx), ``unreadable`` (an empty or cut body where
    an answer should be) or ``error`` (an API failure of another kind).
    """

    raw: RawResponse
    kind: Literal["api", "unauthorized", "unsupported", "page", "failing", "unreadable", "error"]
    decoded: object = None

    @property
    def records(self) -> list[object] | None:
        """The listing's records, if it was one."""
        data = self.decoded
        if isinstance(data, Mapping) and isinstance(data.get("data"), list):
            data = data["data"]
        return list(data) if isinstance(data, list) else None

    @property
    def shape(self) -> ProfileName | None:
        """Which kind of CloudOnex the JSON looks like."""
        data = self.decoded
        if isinstance(data, list):
            return "shipped"
        if isinstance(data, Mapping):
            if "success" in data:
                return "documented"
            if "error" in data:
                return "shipped"
        return None

    @property
    def broken(self) -> bool:
        """Whether the server failed to answer this question (a 5xx, an unreadable body)."""
        return self.kind in ("failing", "unreadable")

    @property
    def reached_api(self) -> bool:
        """Whether CloudOnex's API answered a customer listing as one.

        Every build has customers: "no such resource" there means the request reached
        PHP at the wrong address (a base URL ending in /api gives ``api/api/v2/...``).
        """
        return self.kind in ("api", "unauthorized", "error")


def read_answer(raw: RawResponse) -> Answer:
    """Classify an answer: the API's, a refusal of the key, no such endpoint, a page..."""
    found, decoded = decode_answer(raw)
    if raw.status >= 500:
        return Answer(raw, "failing", decoded if found else None)
    if not found:
        looks_like_a_page = raw.status == 404 or raw.body.lstrip()[:1] == b"<"
        return Answer(raw, "page" if looks_like_a_page else "unreadable")
    message = decoded.get("message") if isinstance(decoded, Mapping) else None
    text = " ".join(map(str, message)) if isinstance(message, list) else str(message or "")
    if raw.status in (401, 403):
        return Answer(raw, "unauthorized", decoded)
    if "unknown resources requested" in text.lower() or "unknown method" in text.lower():
        return Answer(raw, "unsupported", decoded)
    failed = isinstance(decoded, Mapping) and (
        decoded.get("success") is False or decoded.get("error") is True
    )
    if raw.status >= 300 or failed:
        return Answer(raw, "error", decoded)
    return Answer(raw, "api", decoded)


# -- before and around the first answer ----------------------------------------------------


def base_url(site_root: str) -> Finding:
    """The base URL as given: a site root, or (perhaps) something else."""
    doubt = base_url_problem(site_root)
    if doubt is None:
        return Finding("base_url", "ok", f"base URL {site_root}")
    # CloudOnex may really live in such a directory: only no answer from the API proves it.
    return Finding("base_url", "warning", f"base URL {site_root}", doubt)


def unreachable(site_root: str, error: TransportError, *, answered: bool) -> Finding:
    """No answer to a question (``answered``: an earlier one had one)."""
    reason = error.reason
    # aiohttp's certificate and TLS errors (ClientConnectorCertificateError, "[SSL: ...]");
    # its plain connect errors say "ssl:default", in lower case.
    if "Certificate" in reason or "SSL" in reason:
        return Finding(
            "tls",
            "problem",
            f"the TLS handshake failed: {reason}",
            "the server's certificate is not trusted here: fix the certificate (or its "
            "chain) on the server, or trust it here (in Python, ssl= an SSLContext that "
            "trusts it; for the command line, SSL_CERT_FILE naming a bundle that holds it)",
        )
    if isinstance(error, ResponseTooLargeError):
        return Finding(
            "config",
            "problem",
            f"{site_root} answers, but a customer listing is larger than max_response_bytes allows",
            "raise max_response_bytes= (a server without paging sends every record at once)",
        )
    if isinstance(error, RequestTimeoutError):
        what = "stopped answering in time" if answered else "did not answer in time"
    else:
        what = "stopped answering" if answered else "unreachable"
    return Finding(
        "reachable",
        "problem",
        f"{site_root} {what}: {reason}",
        "check the base URL's host and port, the network and any proxy; a slow server "
        "needs a larger timeout=",
    )


def reached(config: ClientConfig, raw: RawResponse, now: float) -> list[Finding]:
    """The reachable, TLS and clock findings, from the first answer."""
    found = [Finding("reachable", "ok", f"{config.site_root} answers (HTTP {raw.status})")]
    local = _is_local(config.site_root)
    if not config.site_root.startswith("https://"):
        found.append(
            Finding(
                "tls",
                "info" if local else "warning",
                "plain http: the key travels unencrypted",
                "" if local else "use https if the server offers it",
            )
        )
    elif config.ssl is False:
        found.append(
            Finding(
                "tls",
                "warning",
                "https, but the certificate is not checked (ssl=False)",
                "anyone on the path can read the key: trust the certificate instead",
            )
        )
    else:
        found.append(Finding("tls", "ok", "https with a verified certificate"))
    found.append(_clock(raw.headers.get("Date"), now))
    return found


def _clock(date: str | None, now: float) -> Finding:
    if not date or http_date(date) is None:
        return Finding(
            "clock", "info", "the server sends no readable Date header: its clock is unknown"
        )
    skew = clock_skew(date, now, math.inf)
    if abs(skew) < MIN_CORRECTED_SKEW:
        return Finding("clock", "ok", "the server's clock agrees with ours")
    side = "behind" if skew > 0 else "ahead of"
    return Finding(
        "clock",
        "warning",
        f"the server's clock is {abs(skew):.0f} s {side} ours",
        "the client corrects the budget's reset times by it, nothing to set; fix the "
        "clock (NTP) on whichever machine is wrong",
    )


def _is_local(site_root: str) -> bool:
    return is_loopback(urllib.parse.urlsplit(site_root).hostname or "")


def failing(site_root: str, answer: Answer, api_key: str) -> Finding:
    """The server failed a question (a 5xx, an unreadable body): nothing more is judged."""
    if answer.kind == "unreadable":
        said = "an empty body" if not answer.raw.body.strip() else "a body cut short"
        how = f"answers HTTP {answer.raw.status} with {said}"
    else:
        message = answer.decoded.get("message") if isinstance(answer.decoded, Mapping) else None
        said = f": {redact(str(message)[:120], api_key)}" if message else ""
        how = f"fails (HTTP {answer.raw.status}{said})"
    return Finding(
        "reachable",
        "problem",
        f"{site_root} answers, but {how}",
        "the server is down or broken, not the configuration: try again later, or see "
        "the server's error log",
    )


# -- the key and the routes ---------------------------------------------------------------


def auth(config: ClientConfig, bearer: Answer, query: Answer) -> tuple[Finding, AuthMode | None]:
    """Which ways of sending the key work; the mode to use for the rest (None: neither)."""
    works = {"bearer": bearer.kind != "unauthorized", "query": query.kind != "unauthorized"}
    if not works["bearer"] and not works["query"]:
        refused = Finding(
            "auth",
            "problem",
            f"the server refuses the key both ways (HTTP {bearer.raw.status})",
            "check the key under Settings → API Access (and that API access is enabled)",
        )
        return refused, None
    if works["bearer"] and works["query"]:
        both = "the key works in the Authorization header and in the URL"
        return Finding("auth", "ok", both), config.auth
    mode: AuthMode = "query" if works["query"] else "bearer"
    summary = (
        "the Authorization header does not arrive (the web server strips it); ?api_key= works"
        if mode == "query"
        else "the key works in the Authorization header only (?api_key= is refused)"
    )
    if config.auth == mode:
        return Finding("auth", "ok", summary), mode
    return Finding("auth", "problem", summary, f"set auth={mode!r}", {"auth": mode}), mode


def odd_but_answering(site_root: str) -> Finding:
    """A base URL that looks wrong, at which the API answers all the same."""
    return Finding("base_url", "ok", f"base URL {site_root} (unusual, but the API answers there)")


def no_api(site_root: str, answer: Answer, api_key: str) -> Finding:
    """Neither URL form reached an API: the base URL is wrong."""
    what = "a page" if answer.raw.body.strip() else "an answer"
    moved = answer.raw.headers.get("Location") if 300 <= answer.raw.status < 400 else None
    moved = excerpt(moved.encode(), api_key) if moved else None
    advice = base_url_problem(site_root) or (
        "check the base URL: give the site root, the address CloudOnex opens at"
    )
    if moved:
        advice = f"it redirects to {moved}: {advice}"
    return Finding(
        "routes",
        "problem",
        f"no CloudOnex API answers under {site_root}: /?ng=api/v2/ and /api/v2/ both gave "
        f"{what} that is not the API (HTTP {answer.raw.status})",
        advice,
    )


def routes(
    config: ClientConfig,
    *,
    ng_works: bool,
    path_works: bool,
    found: ProfileName,
    auth: AuthMode,
) -> tuple[Finding, RouteStyle]:
    """Which URL forms reach the API, against the one the client will use.

    ``found`` and ``auth`` are the profile and the way of sending the key that work:
    a setting that differs is a finding of its own, and its fix brings its routes.
    """
    used = make_profile(found, auth=auth, route_style=config.route_style).route_style
    if not ng_works:
        summary = "only /api/v2/... reaches the API; /?ng=api/v2/... does not"
        if used == "ng":
            return Finding(
                "routes", "problem", summary, "set route_style='path'", {"route_style": "path"}
            ), "path"
        if config.profile == "auto" and config.route_style is None:
            return Finding(
                "routes",
                "problem",
                summary,
                "profile='auto' asks the server through /?ng= unless route_style='path' "
                "is set: set it",
                {"route_style": "path"},
            ), "path"
        return Finding("routes", "ok", summary), "path"
    if path_works:
        both = "URL rewriting works: /api/v2/... and /?ng=api/v2/... both reach the API"
        return Finding("routes", "ok", both), "path"
    summary = "no URL rewriting: /api/v2/... is not the API; only /?ng=api/v2/... works"
    if used == "path":
        return Finding(
            "routes",
            "problem",
            summary,
            "set route_style='ng' (profile='auto' does it for shipped servers)",
            {"route_style": "ng"},
        ), "ng"
    return Finding("routes", "ok", summary), "ng"


# -- what kind of server -----------------------------------------------------------------


def profile(config: ClientConfig, listing: Answer) -> tuple[list[Finding], ProfileName]:
    """The profile and its evidence, and the settings that cannot work with it."""
    found: ProfileName = listing.shape or "documented"
    announced = listing.raw.headers.get("X-RateLimit-Remaining") is not None
    budget = "with X-RateLimit headers" if announced else "no X-RateLimit headers"
    if found == "shipped":
        evidence = (
            f"bare JSON arrays and {{error: ...}} answers, {budget}: shipped CloudOnex 4.x code"
        )
        meaning = (
            "form bodies, singular item paths, no paging, no batch; text fields pass "
            "through its HTML sanitizer (the library undoes the escaping)"
        )
    else:
        evidence = f"{{success, data, message}} envelopes, {budget}: the documented API"
        meaning = ""
    # What profile='auto' decides from its first answer (as the client's probe reads it).
    auto: ProfileName = "documented" if announced else found
    if config.profile == "auto" and auto != found:
        first = Finding(
            "profile",
            "problem",
            f"{evidence}; the budget headers would make profile='auto' choose 'documented'",
            f"set profile={found!r}",
            {"profile": found},
        )
    elif config.profile == "auto":
        chosen = f"with profile='auto' the client will choose {found!r}"
        first = Finding("profile", "ok", evidence, f"{chosen}: {meaning}" if meaning else chosen)
    elif config.profile == found:
        first = Finding("profile", "ok", evidence, meaning)
    else:
        first = Finding(
            "profile",
            "problem",
            f"{evidence}, but the client is set to profile={config.profile!r}",
            f"set profile={found!r}"
            + ("" if announced and found == "shipped" else " (or profile='auto')"),
            {"profile": found},
        )
    return [first, *_settings_for(config, found)], found


def _settings_for(config: ClientConfig, found: ProfileName) -> list[Finding]:
    """Overrides that cannot work with the server's kind of code (one finding at most)."""
    wrong: dict[str, str] = {}
    if found == "shipped" and config.body_encoding == "json":
        wrong["body_encoding"] = "form"  # shipped code reads form fields only
    if config.item_paths is not None:
        fits = "singular" if found == "shipped" else "plural"
        if config.item_paths != fits:
            wrong["item_paths"] = fits
    if not wrong:
        return []
    sets = " and ".join(f"{name}={value!r}" for name, value in wrong.items())
    return [
        Finding(
            "config",
            "problem",
            f"{' and '.join(f'{name}={getattr(config, name)!r}' for name in wrong)} cannot "
            f"work with {found} code (its writes and record paths differ)",
            f"drop the override, or set {sets}",
            wrong,
        )
    ]


def rate_limit(config: ClientConfig, listing: Answer, now: float) -> Finding:
    """The budget the server announces, against the one the client was given.

    A ``rate_period`` too short shows only while the Reset is more than two of them
    away (one answer tells the time to the Reset, not the window's length).
    """
    configured = f"{config.rate_limit} requests per {config.rate_period:g} s"
    info = RateLimitInfo.from_headers(listing.raw.headers, now, math.inf)
    if info is None:
        return Finding(
            "rate_limit",
            "warning",
            "no X-RateLimit headers: the server does not say what the budget is",
            f"the client spends the budget it is given, now {configured}: if your plan's "
            "differs, set rate_limit= and rate_period= to it (the vendor's default is 1000 "
            "per hour)",
        )
    limit = "?" if info.limit is None else str(info.limit)
    to_reset = None if info.reset_at is None else info.reset_at - now
    resets = "" if to_reset is None else f", the window resets in {to_reset:.0f} s"
    summary = f"X-RateLimit headers: {info.remaining} of {limit} left{resets}"
    horizon = 2 * config.rate_period  # the client reads a Reset further off as garbage
    if to_reset is not None and to_reset > horizon:
        period = 3600.0 if to_reset <= 3600 else float(math.ceil(to_reset))
        return Finding(
            "rate_limit",
            "problem",
            summary,
            f"rate_period={config.rate_period:g} is far shorter than the server's window, so "
            f"the client ignores its Reset: set rate_period={period:g} (on the limiter too, "
            "if you give the Client one)",
            {"rate_period": period},
        )
    if info.limit is not None and info.limit != config.rate_limit:
        return Finding(
            "rate_limit",
            "info",
            summary,
            f"the client follows the server's {info.limit} (it was given {configured}); "
            f"set rate_limit={info.limit} to pace the first requests right",
        )
    return Finding("rate_limit", "ok", summary)


def paging(listing: Answer, found: ProfileName) -> Finding:
    """The page size the server really serves, from a listing asked for PAGE_PROBE."""
    if found == "shipped":
        return Finding(
            "paging",
            "info",
            "no paging: a listing returns every record in one answer",
            "a large listing is one large answer: if it fails, raise timeout= and "
            "max_response_bytes=",
        )
    records = listing.records
    if records is None:
        return Finding("paging", "info", "paging not checked (the listing could not be read)")
    decoded = listing.decoded
    meta = decoded.get("meta") if isinstance(decoded, Mapping) else None
    total = _count(meta, ("total_records", "total")) if isinstance(meta, Mapping) else None
    served = len(records)
    if not served:
        return Finding(
            "paging",
            "info",
            "no customers yet, so the page size the server serves cannot be seen",
            "nothing to set: listings read on until a page comes back empty",
        )
    if served > PAGE_PROBE:
        return Finding(
            "paging",
            "warning",
            f"the server ignores the page size: {_records(served)} came for limit={PAGE_PROBE}",
            "listings arrive in one answer: raise max_response_bytes= if a large one fails",
        )
    if total is not None and served < min(total, PAGE_PROBE):
        return Finding(
            "paging",
            "info",
            f"pages hold at most {_records(served)} (asked for {PAGE_PROBE}; {total} in all)",
            f"listings still get every record; page_size={served} asks for what comes",
        )
    if served == PAGE_PROBE:
        return Finding("paging", "ok", f"pages of {PAGE_PROBE} records are served as asked")
    if total is not None:  # everything fit on the one page asked for
        every = "the one record" if total == 1 else f"all {total} records"
        return Finding("paging", "ok", f"{every} came on one page (up to {PAGE_PROBE} asked for)")
    return Finding(
        "paging",
        "info",
        f"{_records(served)} on page 1 and no total: a page-size cap cannot be told apart "
        "from a short listing",
        "nothing to set: listings read on until a page comes back empty",
    )


def _records(count: int) -> str:
    return f"{count} record{'' if count == 1 else 's'}"


def _count(meta: Mapping[str, object], names: Sequence[str]) -> int | None:
    for name in names:
        value = meta.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


# -- endpoints ------------------------------------------------------------------------------


def batch(answer: Answer | str) -> Finding:
    """Whether ``POST batch/<resource>`` exists, from a GET on it (refused with 405 if so)."""
    if isinstance(answer, str):
        return Finding("batch", "info", f"not checked: {answer}")
    status = answer.raw.status
    if status == 405 or answer.kind == "api":
        return Finding(
            "batch", "ok", "POST batch/<resource> exists: bulk jobs send 100 per request"
        )
    if answer.kind == "unsupported" or status == 404:
        return Finding(
            "batch",
            "info",
            "no batch endpoint",
            "bulk jobs send one request per record (each costs one request of the budget)",
        )
    return Finding(
        "batch",
        "info",
        f"the batch endpoint's answer to a GET says nothing (HTTP {status})",
        "bulk jobs try it once and fall back to one request per record",
    )


NO_BATCH = Finding(
    "batch",
    "info",
    "no batch endpoint (shipped CloudOnex 4.x code has none)",
    "bulk jobs send one request per record: each record costs one request of the budget",
)


def resources(customers: Answer, answers: Mapping[str, Answer | str]) -> Finding:
    """Which listings answer as themselves (a string: why a listing got no answer)."""
    served = ["customers"] if customers.kind == "api" else []
    missing, failing_ = [], []
    for name, answer in answers.items():
        if isinstance(answer, str):
            failing_.append(f"{name} ({answer})")
        elif answer.kind == "api" and not _copies(answer, customers):
            served.append(name)
        elif answer.kind == "api":  # shipped code's transactions: the library refuses them
            missing.append(f"{name} (it answers the customer list)")
        elif answer.kind == "unsupported":
            missing.append(name)
        else:
            failing_.append(f"{name} (HTTP {answer.raw.status})")
    summary = f"listings that answer: {', '.join(served) or 'none'}"
    if missing:
        summary += f"; not offered: {', '.join(missing)}"
    if failing_:
        summary += f"; failing: {', '.join(failing_)}"
    advice = ""
    if missing:
        advice = "calls to the ones not offered raise UnsupportedError: this build lacks them"
    if failing_:
        advice += ("; " if advice else "") + "the failing ones may work later: try them"
    status: Status = "warning" if failing_ else ("info" if missing else "ok")
    return Finding("resources", status, summary, advice)


def _copies(answer: Answer, customers: Answer) -> bool:
    """Whether a listing is the customer list again (shipped code's ``transactions``)."""
    mine, theirs = answer.records, customers.records
    if mine is None or theirs is None or answer.shape != "shipped":
        return False
    return mine == theirs[: len(mine)]


def no_answer(error: TransportError) -> str:
    """Why a later question got no answer, in a few words."""
    if isinstance(error, ResponseTooLargeError):
        return "larger than max_response_bytes"
    if isinstance(error, RequestTimeoutError):
        return "timed out"
    return "no answer"
