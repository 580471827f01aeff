"""What the configured server really does, found with a few harmless reads.

:func:`diagnose` asks the server at most :data:`MAX_REQUESTS` questions, every one a
GET (nothing is created or changed), and returns one :class:`Finding` per thing a
user needs to know: whether it is reachable, its clock, which ways of sending the
key and which URL forms reach the API, the profile, the rate-limit headers, paging,
the batch endpoint and which resources answer. Each finding says what it means and
what to set. The requests go through ``exchange``, which the Client provides: this
module does no I/O of its own.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Final, Literal

import attrs

from ._config import ClientConfig
from ._profile import AuthMode, ProfileName, RouteStyle
from ._protocol import (
    MIN_CORRECTED_SKEW,
    RateLimitInfo,
    RawResponse,
    Request,
    base_url_problem,
    build_request,
    clock_skew,
    decode_answer,
)
from .errors import PoolTimeoutError, RateLimitError, RequestTimeoutError, TransportError

Status = Literal["ok", "info", "warning", "problem"]
Exchange = Callable[[Request], Awaitable[RawResponse]]

#: The most requests one diagnosis sends.
MAX_REQUESTS: Final = 15
#: Records asked for in the paging check (the listings' default page size).
PAGE_PROBE: Final = 100

# The resources besides customers, whose listings are asked for once each.
_OTHER_RESOURCES: Final = (
    "invoices",
    "transactions",
    "quotes",
    "products",
    "orders",
    "leads",
    "suppliers",
    "purchases",
    "tickets",
)


@attrs.frozen
class Finding:
    """One fact about the server, what it means, and what to set.

    Attributes:
        check: what was looked at: ``base_url``, ``reachable``, ``tls``, ``clock``,
            ``auth``, ``routes``, ``profile``, ``rate_limit``, ``paging``, ``batch``,
            ``resources`` or ``config``.
        status: ``"ok"``; ``"info"`` (worth knowing); ``"warning"`` (works, with a cost
            or a risk); ``"problem"`` (the configuration does not work as set).
        summary: what the server does.
        advice: what it means and what to set ("" when there is nothing to do).
    """

    check: str
    status: Status
    summary: str
    advice: str = ""


@attrs.frozen
class Diagnosis:
    """Everything :meth:`Client.diagnose` found.

    Attributes:
        findings: one per check, in the order they were made.
        requests: how many requests were sent (at most 15).
    """

    findings: tuple[Finding, ...]
    requests: int

    @property
    def ok(self) -> bool:
        """Whether the configuration works as set (no finding is a problem)."""
        return not self.problems

    @property
    def problems(self) -> tuple[Finding, ...]:
        """The findings that stop the configuration from working as set."""
        return tuple(f for f in self.findings if f.status == "problem")

    def to_dict(self) -> dict[str, object]:
        """The diagnosis as plain data (what ``cloudonex doctor --format json`` prints)."""
        return {
            "ok": self.ok,
            "requests": self.requests,
            "findings": [attrs.asdict(f) for f in self.findings],
        }


@attrs.define
class _Answer:
    """One answer, read just enough to tell what kind of thing sent it."""

    raw: RawResponse
    kind: Literal["api", "unauthorized", "unsupported", "page", "error"]
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


def read_answer(raw: RawResponse) -> _Answer:
    """Classify an answer: the API's, a refusal of the key, no such endpoint, a web page."""
    found, decoded = decode_answer(raw)
    if not found:
        return _Answer(raw, "page" if raw.body.strip() or raw.status == 404 else "error")
    message = decoded.get("message") if isinstance(decoded, Mapping) else None
    text = " ".join(map(str, message)) if isinstance(message, list) else str(message or "")
    if raw.status in (401, 403):
        return _Answer(raw, "unauthorized", decoded)
    if "unknown resources requested" in text.lower() or "unknown method" in text.lower():
        return _Answer(raw, "unsupported", decoded)
    failed = isinstance(decoded, Mapping) and (
        decoded.get("success") is False or decoded.get("error") is True
    )
    if raw.status >= 300 or failed:
        return _Answer(raw, "error", decoded)
    return _Answer(raw, "api", decoded)


class _Doctor:
    """One diagnosis: the requests sent so far, and the findings made."""

    def __init__(self, config: ClientConfig, exchange: Exchange, now: Callable[[], float]):
        self.config = config
        self.exchange = exchange
        self.now = now
        self.findings: list[Finding] = []
        self.requests = 0

    def add(self, check: str, status: Status, summary: str, advice: str = "") -> None:
        self.findings.append(Finding(check, status, summary, advice))

    async def ask(
        self,
        path: str,
        *,
        auth: AuthMode,
        route: RouteStyle,
        params: Mapping[str, object] | None = None,
    ) -> _Answer:
        """GET ``path`` with the key sent one way (only that way) through one URL form."""
        if self.requests >= MAX_REQUESTS:  # pragma: no cover - the checks stay below it
            raise RuntimeError("a diagnosis sends at most 15 requests")
        config = self.config
        request = build_request(
            site_root=config.site_root,
            api_key=config.api_key,
            auth=auth,
            method="GET",
            path=path,
            params=params,
            route_style=route,
            horizon=2 * config.rate_period,
        )
        # The session carries the key in a header when auth="bearer": each question
        # sends it one way only (an empty header is no key).
        if auth != config.auth:
            header = f"Bearer {config.api_key}" if auth == "bearer" else ""
            request.headers = {"Authorization": header}
        self.requests += 1
        answer = read_answer(await self.exchange(request))
        if answer.raw.status == 429:
            raise _Refused(answer.raw)
        return answer


class _Refused(Exception):
    """The server answered 429: nothing more can be learned now."""

    def __init__(self, raw: RawResponse) -> None:
        super().__init__("rate limited")
        self.raw = raw


async def diagnose(config: ClientConfig, exchange: Exchange, now: Callable[[], float]) -> Diagnosis:
    """Find out what the server at ``config.site_root`` really does (see the module doc).

    Args:
        config: the Client's configuration (what is checked against the server).
        exchange: sends one request once, under the Client's budget, and returns the
            answer whatever its status; raises TransportError when none came.
        now: the local epoch time (the Client's clock).
    """
    doctor = _Doctor(config, exchange, now)
    wrong_base = base_url_problem(config.site_root)
    if wrong_base:
        doctor.add("base_url", "problem", f"base URL {config.site_root}", wrong_base)
    else:
        doctor.add("base_url", "ok", f"base URL {config.site_root} (the API under /api/v2/)")
    try:
        await _examine(doctor)
    except TransportError as error:
        _unreachable(doctor, error)
    except (_Refused, RateLimitError) as refused:
        _spent(doctor, refused)
    except PoolTimeoutError as error:
        doctor.add(
            "reachable",
            "problem",
            f"no request could be sent: {error}",
            "every concurrency slot stayed busy; run the diagnosis when the client is idle",
        )
    return Diagnosis(tuple(doctor.findings), doctor.requests)


async def _examine(doctor: _Doctor) -> None:
    """Every check that needs the server, in order; stops when nothing answers."""
    params = {"page": 1, "limit": PAGE_PROBE}
    bearer = await doctor.ask("customers", auth="bearer", route="ng", params=params)
    _reached(doctor, bearer.raw)
    query = await doctor.ask("customers", auth="query", route="ng", params=params)
    auth = _auth(doctor, bearer, query)
    if auth is None:
        return
    working = bearer if auth == "bearer" else query
    path = await doctor.ask("customers", auth=auth, route="path", params={"limit": 1})
    if working.kind == "page" and path.kind in ("page", "unsupported"):
        _no_api(doctor, working)
        return
    listing = working if working.kind != "page" else path
    profile = _profile(doctor, listing)
    route = _routes(doctor, working, path, profile)
    _rate_limit(doctor, listing)
    _paging(doctor, listing, profile)
    if profile == "documented":
        _batch(doctor, await doctor.ask("batch/customers", auth=auth, route=route))
    else:
        doctor.add(
            "batch",
            "info",
            "no batch endpoint (shipped CloudOnex 4.x code has none)",
            "bulk jobs send one request per record: each record costs one request of the budget",
        )
    answers = {
        name: await doctor.ask(name, auth=auth, route=route, params={"limit": 1})
        for name in _OTHER_RESOURCES
    }
    _resources(doctor, listing, answers)


def _spent(doctor: _Doctor, refused: _Refused | RateLimitError) -> None:
    if isinstance(refused, _Refused):
        now = doctor.now()
        info = RateLimitInfo.from_headers(refused.raw.headers, now)
        when = info.reset_at - now if info is not None and info.reset_at is not None else None
        summary = "the server refuses requests for now (HTTP 429: the key's budget is spent)"
    else:
        when = refused.retry_after
        summary = f"the key's budget is spent: {refused}"
    again = "later" if when is None else f"in {math.ceil(max(when, 0))} s"
    doctor.add(
        "rate_limit",
        "problem",
        summary,
        f"nothing more can be checked now: run the diagnosis again {again} (the key's "
        "other users share its budget)",
    )


def _unreachable(doctor: _Doctor, error: TransportError) -> None:
    reason = error.reason
    # aiohttp's certificate and TLS errors (ClientConnectorCertificateError, "[SSL: ...]");
    # its plain connect errors say "ssl:default", in lower case.
    if "Certificate" in reason or "SSL" in reason:
        doctor.add(
            "tls",
            "problem",
            f"the TLS handshake failed: {reason}",
            "the server's certificate is not trusted here: fix the certificate (or its "
            "chain) on the server, or pass ssl= an SSLContext that trusts it",
        )
        return
    what = "did not answer in time" if isinstance(error, RequestTimeoutError) else "unreachable"
    doctor.add(
        "reachable",
        "problem",
        f"{doctor.config.site_root} {what}: {reason}",
        "check the base URL's host and port, the network and any proxy; a slow server "
        "needs a larger timeout",
    )


def _reached(doctor: _Doctor, raw: RawResponse) -> None:
    """The reachable, TLS and clock findings, from the first answer."""
    config = doctor.config
    doctor.add("reachable", "ok", f"{config.site_root} answers (HTTP {raw.status})")
    if config.site_root.startswith("https://"):
        if config.ssl is False:
            doctor.add(
                "tls",
                "warning",
                "https, but the certificate is not checked (ssl=False)",
                "anyone on the path can read the key: trust the certificate instead",
            )
        else:
            doctor.add("tls", "ok", "https with a verified certificate")
    else:
        doctor.add(
            "tls",
            "info" if _is_local(config.site_root) else "warning",
            "plain http: the key travels unencrypted",
            "" if _is_local(config.site_root) else "use https if the server offers it",
        )
    date = raw.headers.get("Date")
    now = doctor.now()
    skew = clock_skew(date, now, math.inf) if date else 0.0
    if not date:
        doctor.add("clock", "info", "the server sends no Date header; its clock is unknown")
    elif abs(skew) < MIN_CORRECTED_SKEW:
        doctor.add("clock", "ok", "the server's clock agrees with ours")
    else:
        side = "behind" if skew > 0 else "ahead of"
        doctor.add(
            "clock",
            "warning",
            f"the server's clock is {abs(skew):.0f} s {side} ours",
            "the client corrects the budget's reset times by it, nothing to set; fix the "
            "clock (NTP) on whichever machine is wrong",
        )


def _is_local(site_root: str) -> bool:
    host = urllib.parse.urlsplit(site_root).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def _auth(doctor: _Doctor, bearer: _Answer, query: _Answer) -> AuthMode | None:
    """The auth finding; returns the mode to use for the rest (None: neither works)."""
    config = doctor.config
    works = {"bearer": bearer.kind != "unauthorized", "query": query.kind != "unauthorized"}
    if bearer.kind == "page" and query.kind == "page":
        return "bearer" if config.auth == "bearer" else "query"  # _routes says why
    if not works["bearer"] and not works["query"]:
        doctor.add(
            "auth",
            "problem",
            f"the server refuses the key both ways (HTTP {bearer.raw.status})",
            "check the key under Settings → API Access (and that API access is enabled)",
        )
        return None
    if works["bearer"] and works["query"]:
        doctor.add("auth", "ok", "the key works in the Authorization header and in the URL")
        return config.auth
    if works["query"]:
        status: Status = "problem" if config.auth == "bearer" else "ok"
        doctor.add(
            "auth",
            status,
            "the Authorization header does not arrive (the web server strips it); ?api_key= works",
            "set auth='query' (CLOUDONEX_AUTH=query)" if status == "problem" else "",
        )
        return "query"
    status = "problem" if config.auth == "query" else "ok"
    doctor.add(
        "auth",
        status,
        "the key works in the Authorization header only (?api_key= is refused)",
        "set auth='bearer'" if status == "problem" else "",
    )
    return "bearer"


def _no_api(doctor: _Doctor, ng: _Answer) -> None:
    site_root = doctor.config.site_root
    doctor.add(
        "routes",
        "problem",
        f"no CloudOnex API answers under {site_root}: /?ng=api/v2/ and /api/v2/ both gave "
        f"{'a page' if ng.raw.body.strip() else 'an answer'} that is not the API "
        f"(HTTP {ng.raw.status})",
        base_url_problem(site_root)
        or "check the base URL: give the site root, the address CloudOnex opens at",
    )


def _routes(doctor: _Doctor, ng: _Answer, path: _Answer, found: ProfileName) -> RouteStyle:
    """The routes finding; returns the route style that reaches the API."""
    config = doctor.config
    # The route style the client will use (as make_profile decides it).
    name = found if config.profile == "auto" else config.profile
    used = config.route_style or ("ng" if name == "shipped" or config.auth == "query" else "path")
    if ng.kind == "page":  # rewriting works, and ?ng= does not
        doctor.add(
            "routes",
            "problem" if used == "ng" else "ok",
            "only /api/v2/... reaches the API; /?ng=api/v2/... does not",
            "set route_style='path'" if used == "ng" else "",
        )
        return "path"
    if path.kind in ("api", "unauthorized"):
        doctor.add(
            "routes",
            "ok",
            "URL rewriting works: /api/v2/... and /?ng=api/v2/... both reach the API",
        )
        return "path"
    doctor.add(
        "routes",
        "problem" if used == "path" else "ok",
        f"no URL rewriting: /api/v2/... is HTTP {path.raw.status}, not the API; only "
        "/?ng=api/v2/... works",
        "set route_style='ng' (profile='auto' does it for shipped servers)"
        if used == "path"
        else "",
    )
    return "ng"


def _profile(doctor: _Doctor, listing: _Answer) -> ProfileName:
    """The profile finding (and the config check that follows from it)."""
    config = doctor.config
    found = listing.shape or "documented"
    if found == "shipped":
        evidence = (
            "bare JSON arrays and {error: ...} answers, no rate-limit headers: shipped "
            "CloudOnex 4.x code"
        )
        meaning = (
            "form bodies, singular item paths, no paging, no batch; text fields pass "
            "through its HTML sanitizer (the library undoes the escaping)"
        )
    else:
        evidence = "{success, data, message} envelopes: the API as the vendor documents it"
        meaning = ""
    if config.profile == "auto":
        chosen = f"profile='auto' will choose {found!r}"
        doctor.add("profile", "ok", evidence, f"{chosen}: {meaning}" if meaning else chosen)
    elif config.profile == found:
        doctor.add("profile", "ok", evidence, meaning)
    else:
        doctor.add(
            "profile",
            "problem",
            f"{evidence}, but the client is set to profile={config.profile!r}",
            f"set profile={found!r} (or profile='auto')",
        )
    if found == "shipped" and config.body_encoding == "json":
        doctor.add(
            "config",
            "problem",
            "body_encoding='json', but shipped code reads form fields only",
            "drop body_encoding='json' (or set body_encoding='form')",
        )
    return found


def _rate_limit(doctor: _Doctor, listing: _Answer) -> None:
    config = doctor.config
    info = RateLimitInfo.from_headers(listing.raw.headers, doctor.now(), 2 * config.rate_period)
    configured = f"rate_limit={config.rate_limit} per rate_period={config.rate_period:g} s"
    if info is None:
        doctor.add(
            "rate_limit",
            "warning",
            "no X-RateLimit headers: the server does not say what the budget is",
            f"the client spends the budget you configured ({configured}): set them to "
            "your plan's (the vendor's default is 1000 per hour)",
        )
        return
    limit = "?" if info.limit is None else str(info.limit)
    resets = (
        ""
        if info.reset_at is None
        else f", the window resets in {info.reset_at - doctor.now():.0f} s"
    )
    summary = f"X-RateLimit headers: {info.remaining} of {limit} left{resets}"
    if info.limit is not None and info.limit != config.rate_limit:
        doctor.add(
            "rate_limit",
            "info",
            summary,
            f"the client follows the server's {info.limit} (you configured {configured}); "
            "set rate_limit to match to pace the first requests right",
        )
    else:
        doctor.add("rate_limit", "ok", summary)


def _paging(doctor: _Doctor, listing: _Answer | None, profile: ProfileName) -> None:
    """The page size the server really serves, from the first listing's answer."""
    if profile == "shipped":
        doctor.add(
            "paging",
            "info",
            "no paging: a listing returns every record in one answer",
            "a large listing is one large answer: raise timeout and max_response_bytes if it fails",
        )
        return
    records = listing.records if listing is not None else None
    if listing is None or records is None:
        doctor.add("paging", "info", "paging not checked (the listing could not be read)")
        return
    decoded = listing.decoded
    meta = decoded.get("meta") if isinstance(decoded, Mapping) else None
    total = _count(meta, ("total_records", "total")) if isinstance(meta, Mapping) else None
    served = len(records)
    if not served:
        doctor.add(
            "paging",
            "info",
            "no customers yet, so the page size the server serves cannot be seen",
            "nothing to set: listings read on until a page comes back empty",
        )
    elif served > PAGE_PROBE:
        doctor.add(
            "paging",
            "warning",
            f"the server ignores the page size: {served} records came for limit={PAGE_PROBE}",
            "listings arrive in one answer: raise max_response_bytes if a large one fails",
        )
    elif total is not None and served < min(total, PAGE_PROBE):
        doctor.add(
            "paging",
            "info",
            f"pages hold at most {served} records (asked for {PAGE_PROBE}; {total} in all)",
            f"listings still get every record; page_size={served} asks for what comes",
        )
    elif total is None and served < PAGE_PROBE and served:
        doctor.add(
            "paging",
            "info",
            f"{served} records on page 1 and no total: a page-size cap cannot be told apart "
            "from a short listing",
            "nothing to set: listings read on until a page comes back empty",
        )
    else:
        how = f"{total} records in all" if total is not None else "no total given"
        doctor.add("paging", "ok", f"pages of up to {PAGE_PROBE} records are served ({how})")


def _count(meta: Mapping[str, object], names: Sequence[str]) -> int | None:
    for name in names:
        value = meta.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _batch(doctor: _Doctor, answer: _Answer) -> None:
    status = answer.raw.status
    if status == 405 or answer.kind == "api":  # the path exists (and refuses a GET)
        doctor.add("batch", "ok", "POST batch/<resource> exists: bulk jobs send 100 per request")
    elif answer.kind == "unsupported" or status == 404:
        doctor.add(
            "batch",
            "info",
            "no batch endpoint",
            "bulk jobs send one request per record (each costs one request of the budget)",
        )
    else:
        doctor.add(
            "batch",
            "info",
            f"the batch endpoint's answer to a GET says nothing (HTTP {status})",
            "bulk jobs try it once and fall back to one request per record",
        )


def _resources(doctor: _Doctor, customers: _Answer, answers: Mapping[str, _Answer]) -> None:
    """Which listings answer as themselves."""
    served = ["customers"] if customers.kind == "api" else []
    missing, failing = [], []
    for name, answer in answers.items():
        if answer.kind == "api" and not _copies(answer, customers):
            served.append(name)
        elif answer.kind == "api":
            failing.append(f"{name} (answers the customer list)")
        elif answer.kind == "unsupported":
            missing.append(name)
        else:
            failing.append(f"{name} (HTTP {answer.raw.status})")
    summary = f"listings that answer: {', '.join(served) or 'none'}"
    if missing:
        summary += f"; not offered: {', '.join(missing)}"
    if failing:
        summary += f"; failing: {', '.join(failing)}"
    status: Status = "warning" if failing else ("info" if missing else "ok")
    advice = ""
    if missing or failing:
        advice = (
            "calls to the others raise UnsupportedError (or the error shown); this build "
            "of CloudOnex lacks them"
        )
    doctor.add("resources", status, summary, advice)


def _copies(answer: _Answer, customers: _Answer) -> bool:
    """Whether a listing is the customer list again (shipped code's ``transactions``)."""
    mine, theirs = answer.records, customers.records
    if mine is None or theirs is None or answer.shape != "shipped":
        return False
    return mine == theirs[: len(mine)]
