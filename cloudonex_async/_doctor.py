"""What the configured server really does, found with a few harmless reads.

:func:`diagnose` asks the server at most :data:`MAX_REQUESTS` questions, every one a
GET (nothing is created or changed), and returns a :class:`Diagnosis`: one
:class:`Finding` per check (whether it is reachable, its clock, which ways of sending
the key and which URL forms reach the API, the profile, the rate-limit headers,
paging, the batch endpoint, which resources answer), each saying what it means and
what to set. The questions go through ``exchange``, which the Client provides, and
:mod:`._findings` judges the answers: this module does no I/O of its own.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Final

import attrs

from . import _findings as judge
from ._config import ClientConfig
from ._findings import PAGE_PROBE, Answer, Finding, read_answer
from ._profile import AuthMode, RouteStyle
from ._protocol import (
    PROBE_PATH,
    RateLimitInfo,
    RawResponse,
    Request,
    build_request,
    parse_retry_after,
)
from .errors import BudgetStoreError, PoolTimeoutError, RateLimitError, TransportError

Exchange = Callable[[Request], Awaitable[RawResponse]]

#: The most requests one diagnosis sends.
MAX_REQUESTS: Final = 15


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
            "findings": [{**attrs.asdict(f), "fix": dict(f.fix)} for f in self.findings],
        }


class _Stop(Exception):
    """Nothing more can be learned now; ``finding`` says why."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.summary)
        self.finding = finding


class _Doctor:
    """One diagnosis: the requests sent so far, and the findings made."""

    def __init__(self, config: ClientConfig, exchange: Exchange, now: Callable[[], float]):
        self.config = config
        self.exchange = exchange
        self.now = now
        self.findings: dict[str, Finding] = {}  # by check: one finding each
        self.requests = 0

    def add(self, *findings: Finding) -> None:
        """Keep one finding per check: the first, unless a later one is a problem."""
        for finding in findings:
            known = self.findings.get(finding.check)
            if known is None or (finding.status == "problem" and known.status != "problem"):
                self.findings[finding.check] = finding

    async def ask(
        self,
        path: str,
        *,
        auth: AuthMode,
        route: RouteStyle,
        params: Mapping[str, object] | None = None,
    ) -> Answer:
        """GET ``path`` with the key sent one way (only that way) through one URL form.

        Raises:
            _Stop: the server answered 429.
            TransportError: no answer (``request_sent`` says whether it was counted).
        """
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
        # The transport's session sends the key in a header when auth="bearer" (and
        # only then): each question sends it one way only. An empty header is no key.
        if auth != config.auth:
            header = f"Bearer {config.api_key}" if auth == "bearer" else ""
            request.headers = {"Authorization": header}
        try:
            raw = await self.exchange(request)
        except TransportError as error:
            self.requests += error.request_sent
            raise
        self.requests += 1
        if raw.status == 429:
            raise _Stop(_refused(raw, self.now()))
        return read_answer(raw)

    async def ask_sound(
        self,
        path: str,
        *,
        auth: AuthMode,
        route: RouteStyle,
        params: Mapping[str, object] | None = None,
    ) -> Answer:
        """As :meth:`ask`, for the questions every judgement rests on: a failed answer stops."""
        answer = await self.ask(path, auth=auth, route=route, params=params)
        if answer.broken:
            raise _Stop(judge.failing(self.config.site_root, answer, self.config.api_key))
        return answer

    async def ask_or_why(self, path: str, *, auth: AuthMode, route: RouteStyle) -> Answer | str:
        """As :meth:`ask` with ``limit=1``, but a question without an answer says why."""
        try:
            return await self.ask(path, auth=auth, route=route, params={"limit": 1})
        except TransportError as error:
            return judge.no_answer(error)


async def diagnose(
    config: ClientConfig,
    exchange: Exchange,
    now: Callable[[], float],
    resources: Sequence[str],
) -> Diagnosis:
    """Find out what the server at ``config.site_root`` really does (see the module doc).

    Args:
        config: the Client's configuration (what is checked against the server).
        exchange: sends one request once, under the Client's budget, and returns the
            answer whatever its status (a 429 after the limiter has heard of it);
            raises TransportError when none came, RateLimitError or PoolTimeoutError
            when it could not be sent.
        now: the local epoch time (the Client's clock).
        resources: the listings whose answers to check (the Client's record resources).
    """
    doctor = _Doctor(config, exchange, now)
    doctor.add(judge.base_url(config.site_root))
    try:
        await _examine(doctor, [name for name in resources if name != "customers"])
    except _Stop as stop:
        doctor.add(stop.finding)
    except PoolTimeoutError as error:  # a TransportError: caught before them
        doctor.add(_busy(error, doctor.requests))
    except TransportError as error:  # of a question every judgement rests on
        answered = "reachable" in doctor.findings
        doctor.add(judge.unreachable(config.site_root, error, answered=answered))
    except RateLimitError as error:
        doctor.add(_held_back(error, doctor.requests))
    except BudgetStoreError as error:
        doctor.add(
            Finding(
                "store",
                "problem",
                str(error),
                "check the store (Redis) the client's limiter uses, then run it again",
            )
        )
    return Diagnosis(tuple(doctor.findings.values()), doctor.requests)


async def _examine(doctor: _Doctor, others: Sequence[str]) -> None:
    """Every check that needs the server, in order; stops when nothing more can be seen."""
    config = doctor.config
    page = {"page": 1, "limit": PAGE_PROBE}
    bearer = await doctor.ask("customers", auth="bearer", route="ng", params=page)
    first = judge.reached(config, bearer.raw, doctor.now())  # reachable, tls, clock
    doctor.add(*first)
    if bearer.broken:  # it answers, but fails: nothing else can be judged
        raise _Stop(judge.failing(config.site_root, bearer, config.api_key))
    query = await doctor.ask_sound("customers", auth="query", route="ng", params=page)
    ng_works = bearer.reached_api or query.reached_api
    if not ng_works:  # ?ng= is no API here: ask the same through /api/v2/ instead
        bearer = await doctor.ask_sound("customers", auth="bearer", route="path", params=page)
        query = await doctor.ask_sound("customers", auth="query", route="path", params=page)
        if not (bearer.reached_api or query.reached_api):
            raise _Stop(judge.no_api(config.site_root, bearer, config.api_key))
    found_auth, auth = judge.auth(config, bearer, query)
    doctor.add(found_auth)
    if auth is None:
        return
    # The listing to judge by: an API answer, whichever way of sending the key gave it.
    listing = next((a for a in (bearer, query) if a.kind == "api"), bearer)
    path_works = not ng_works
    if ng_works:  # does /api/v2/ reach it too? (a path no server has: a small answer)
        probe = await doctor.ask_sound(PROBE_PATH, auth=auth, route="path")
        path_works = probe.kind != "page"
    found_profile, profile = judge.profile(config, listing)
    found_routes, route = judge.routes(
        config, ng_works=ng_works, path_works=path_works, found=profile, auth=auth
    )
    doctor.add(found_profile[0], found_routes, *found_profile[1:])
    if doctor.findings["base_url"].status == "warning":  # an odd root, but the API is there
        doctor.findings["base_url"] = judge.odd_but_answering(config.site_root)
    doctor.add(judge.rate_limit(config, listing, doctor.now()))
    doctor.add(judge.paging(listing, profile))
    if profile == "shipped":
        doctor.add(judge.NO_BATCH)
    else:
        doctor.add(judge.batch(await doctor.ask_or_why("batch/customers", auth=auth, route=route)))
    answers = {name: await doctor.ask_or_why(name, auth=auth, route=route) for name in others}
    doctor.add(judge.resources(listing, answers))


def _refused(raw: RawResponse, now: float) -> Finding:
    info = RateLimitInfo.from_headers(raw.headers, now, math.inf)
    when = parse_retry_after(raw.headers, now, math.inf)
    if when is None and info is not None and info.reset_at is not None:
        when = info.reset_at - now
    return Finding(
        "budget",
        "problem",
        "the server refuses requests for now (HTTP 429: the key's budget is spent)",
        f"nothing more can be checked now: run the diagnosis again {_again(when)} (the "
        "key's other users share its budget)",
    )


# A diagnosis that had to stop is never "works as set": what it did not see, it cannot
# vouch for. Each of these is a problem, and says how to get the rest.


def _held_back(error: RateLimitError, sent: int) -> Finding:
    """The client's own budget held a question back (spent, or paced)."""
    stopped = f"stopped after {_requests(sent)}"
    if error.remaining:  # budget is left: pacing spaces the requests out
        return Finding(
            "budget",
            "problem",
            f"{stopped}: this client spaces its requests (pacing='smooth'), the next in "
            f"{math.ceil(error.retry_after or 0)} s",
            "the other checks were not made: diagnose with a Client of pacing='burst' (the "
            "command line's), with a limiter of its own if the key's is shared",
        )
    return Finding(
        "budget",
        "problem",
        f"{stopped}: the key's budget is spent ({error})",
        f"nothing more can be checked now: run the diagnosis again {_again(error.retry_after)}",
    )


def _busy(error: PoolTimeoutError, sent: int) -> Finding:
    return Finding(
        "budget",
        "problem",
        f"stopped after {_requests(sent)}: every concurrency slot of this client stayed busy",
        "the other checks were not made: run the diagnosis when the client is less busy "
        "(or raise max_concurrency=)",
    )


def _requests(count: int) -> str:
    return f"{count} request" if count == 1 else f"{count} requests"


def _again(seconds: float | None) -> str:
    return "later" if seconds is None else f"in {math.ceil(max(seconds, 0))} s"
