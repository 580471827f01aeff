"""Client settings, checked once and frozen into a ClientConfig.

Every option is range-checked here, with a ConfigurationError that says what is
allowed; the transport and the limiter are built from the result, so nothing
downstream sees a value it was not meant to.
"""

from __future__ import annotations

import enum
import math
import os
import ssl as _ssl
from collections.abc import Callable, Sequence
from typing import Final

import attrs

from ._budget import Pacing
from ._events import Event
from ._profile import (
    PROFILE_CHOICES,
    AuthMode,
    BodyEncoding,
    ItemPaths,
    ProfileChoice,
    RouteStyle,
    ServerProfile,
    check_choice,
    make_profile,
)
from ._protocol import RetryPolicy, normalize_base_url
from .errors import ConfigurationError

DEFAULT_TIMEOUT: Final = 30.0
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
DEFAULT_MAX_CONCURRENCY: Final = 32
DEFAULT_MAX_RESPONSE_BYTES: Final = 16 * 1024 * 1024
MAX_CONCURRENCY: Final = 10_000
DEFAULT_RATE_LIMIT: Final = 1000
DEFAULT_RATE_PERIOD: Final = 3600.0
DEFAULT_BULK_RESERVE: Final = 0.1
ENV_API_KEY: Final = "CLOUDONEX_API_KEY"
ENV_BASE_URL: Final = "CLOUDONEX_BASE_URL"


class _Unset(enum.Enum):
    UNSET = enum.auto()

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset.UNSET
"""Per-call "use the client's default", distinct from None (which means "no limit")."""

EventHook = Callable[[Event], object]


@attrs.frozen(kw_only=True)
class BudgetSettings:
    """The budget a Client asked for: the settings its limiter must have."""

    rate_limit: int = DEFAULT_RATE_LIMIT
    rate_period: float = DEFAULT_RATE_PERIOD
    pacing: Pacing = "burst"
    bulk_reserve: float = DEFAULT_BULK_RESERVE


@attrs.frozen(kw_only=True)
class ClientConfig:
    """Everything a Client was configured with. The API key is never shown in its repr.

    ``profile`` is what was asked for (``"auto"`` included); ``body_encoding``,
    ``route_style`` and ``item_paths`` are the explicit overrides (None: the profile's).
    ``rate_limit``, ``rate_period``, ``pacing`` and ``bulk_reserve`` are those of the
    limiter the client spends, which may be shared with other Clients of the key.
    """

    site_root: str
    api_key: str = attrs.field(repr=False)
    auth: AuthMode
    profile: ProfileChoice
    body_encoding: BodyEncoding | None
    route_style: RouteStyle | None
    item_paths: ItemPaths | None
    timeout: float
    connect_timeout: float
    read_timeout: float
    max_response_bytes: int
    max_concurrency: int
    max_wait: float | None
    retry: RetryPolicy
    rate_limit: int
    rate_period: float
    pacing: Pacing
    bulk_reserve: float
    ssl: _ssl.SSLContext | bool | None = attrs.field(repr=False)
    user_agent: str
    event_hooks: tuple[EventHook, ...] = attrs.field(default=(), repr=False)
    lenient_values: bool = False

    @property
    def budget(self) -> BudgetSettings:
        """The budget settings, for comparing with a limiter's."""
        return BudgetSettings(
            rate_limit=self.rate_limit,
            rate_period=self.rate_period,
            pacing=self.pacing,
            bulk_reserve=self.bulk_reserve,
        )

    def server_profile(self, name: str) -> ServerProfile:
        """Return the profile ``name`` ("documented" or "shipped") with this config's overrides.

        Raises:
            ConfigurationError: ``body_encoding="json"`` for shipped 4.x code, which
                ignores JSON bodies (a user create would make an Admin with no name).
        """
        if name == "shipped" and self.body_encoding == "json":
            raise ConfigurationError(
                f"{self.site_root} runs shipped CloudOnex 4.x code, which reads form fields "
                "only and ignores a JSON body (a user create then makes an Admin user with "
                "no name, and other creates fail as if every field were missing): drop "
                "body_encoding='json' or pass body_encoding='form'"
            )
        return make_profile(
            "shipped" if name == "shipped" else "documented",
            auth=self.auth,
            body_encoding=self.body_encoding,
            route_style=self.route_style,
            item_paths=self.item_paths,
        )


def make_config(
    *,
    base_url: str | None,
    api_key: str | None,
    auth: AuthMode = "bearer",
    profile: ProfileChoice = "documented",
    body_encoding: BodyEncoding | None = None,
    route_style: RouteStyle | None = None,
    item_paths: ItemPaths | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    connect_timeout: float | None = None,
    read_timeout: float | None = None,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    max_wait: float | None = None,
    retry: RetryPolicy | None = None,
    budget: BudgetSettings | None = None,
    ssl: _ssl.SSLContext | bool | None = None,
    allow_insecure_http: bool = False,
    user_agent: str = "cloudonex-async",
    event_hooks: Sequence[EventHook] = (),
    lenient_values: bool = False,
) -> ClientConfig:
    """Check the arguments, fill in the environment defaults, and freeze them.

    Raises:
        ConfigurationError: a value is missing or out of range; the message says what
            is allowed.
    """
    base_url = base_url or os.environ.get(ENV_BASE_URL)
    api_key = api_key or os.environ.get(ENV_API_KEY)
    if not base_url:
        raise ConfigurationError(
            f"no base_url: pass Client(base_url='https://your-domain.com') or set {ENV_BASE_URL}"
        )
    if not api_key:
        raise ConfigurationError(
            f"no api_key: pass Client(api_key=...) or set {ENV_API_KEY} "
            "(create a key under Settings → API Access)"
        )
    if any(c in api_key for c in "\r\n\0"):
        raise ConfigurationError("api_key holds a line break or NUL; copy the key again")
    check_choice("auth", auth, ("bearer", "query"))
    check_choice("profile", profile, PROFILE_CHOICES)
    check_choice("body_encoding", body_encoding, ("json", "form"))
    check_choice("route_style", route_style, ("path", "ng"))
    check_choice("item_paths", item_paths, ("plural", "singular"))
    check_timeout(timeout)
    connect = min(DEFAULT_CONNECT_TIMEOUT, timeout) if connect_timeout is None else connect_timeout
    if not positive_seconds(connect) or connect > timeout:
        raise ConfigurationError(
            f"connect_timeout must be a number of seconds > 0 and at most timeout={timeout:g}, "
            f"not {connect_timeout!r}"
        )
    read = timeout if read_timeout is None else read_timeout
    if not positive_seconds(read) or read > timeout:
        raise ConfigurationError(
            f"read_timeout (seconds between two pieces of an answer) must be > 0 and at most "
            f"timeout={timeout:g}, not {read_timeout!r}"
        )
    if (
        isinstance(max_response_bytes, bool)
        or not isinstance(max_response_bytes, int)
        or not 1024 <= max_response_bytes <= 2**31
    ):
        raise ConfigurationError(
            "max_response_bytes must be an int from 1024 to 2**31 (bytes, after "
            f"decompression), not {max_response_bytes!r}"
        )
    if (
        isinstance(max_concurrency, bool)
        or not isinstance(max_concurrency, int)
        or not 1 <= max_concurrency <= MAX_CONCURRENCY
    ):
        raise ConfigurationError(
            f"max_concurrency must be an int from 1 to {MAX_CONCURRENCY}, not {max_concurrency!r}"
        )
    check_max_wait(max_wait)
    retry = retry or RetryPolicy()
    check_retry(retry)
    budget = budget or BudgetSettings()
    check_budget_settings(budget.rate_limit, budget.rate_period, budget.pacing, budget.bulk_reserve)
    if not isinstance(user_agent, str) or not user_agent or any(c in user_agent for c in "\r\n"):
        raise ConfigurationError(f"user_agent must be one line of text, not {user_agent!r}")
    hooks = tuple(event_hooks)
    if not all(callable(hook) for hook in hooks):
        raise ConfigurationError("event_hooks must be callables that take an Event")
    if not isinstance(lenient_values, bool):
        raise ConfigurationError(f"lenient_values is True or False, not {lenient_values!r}")
    return ClientConfig(
        site_root=normalize_base_url(base_url, allow_insecure_http=allow_insecure_http),
        api_key=api_key,
        auth=auth,
        profile=profile,
        body_encoding=body_encoding,
        route_style=route_style,
        item_paths=item_paths,
        timeout=float(timeout),
        connect_timeout=float(connect),
        read_timeout=float(read),
        max_response_bytes=max_response_bytes,
        max_concurrency=max_concurrency,
        max_wait=max_wait,
        retry=retry,
        rate_limit=budget.rate_limit,
        rate_period=float(budget.rate_period),
        pacing=budget.pacing,
        bulk_reserve=float(budget.bulk_reserve),
        ssl=ssl,
        user_agent=user_agent,
        event_hooks=hooks,
        lenient_values=lenient_values,
    )


def check_timeout(timeout: object) -> None:
    """Raise ConfigurationError unless ``timeout`` is a number of seconds > 0."""
    if not positive_seconds(timeout):
        raise ConfigurationError(f"timeout must be a number of seconds > 0, not {timeout!r}")


def check_max_wait(max_wait: object) -> None:
    """Raise ConfigurationError unless ``max_wait`` is None or seconds >= 0."""
    if max_wait is None:
        return
    if (
        isinstance(max_wait, bool)
        or not isinstance(max_wait, (int, float))
        or not math.isfinite(max_wait)
        or max_wait < 0
    ):
        raise ConfigurationError(
            f"max_wait must be seconds >= 0, or None to wait as needed; not {max_wait!r}"
        )


def check_retry(retry: object) -> None:
    """Raise ConfigurationError unless ``retry`` is a sensible RetryPolicy."""
    if not isinstance(retry, RetryPolicy):
        raise ConfigurationError(f"retry must be a RetryPolicy, not {type(retry).__name__}")
    if isinstance(retry.attempts, bool) or not isinstance(retry.attempts, int):
        raise ConfigurationError("RetryPolicy.attempts must be an int")
    if not 1 <= retry.attempts <= 100:
        raise ConfigurationError(
            "RetryPolicy.attempts counts every try: from 1 (no retries) to 100, "
            f"not {retry.attempts}"
        )
    if not (
        isinstance(retry.backoff_base, (int, float))
        and isinstance(retry.backoff_max, (int, float))
        and math.isfinite(retry.backoff_max)
        and 0 <= retry.backoff_base <= retry.backoff_max
    ):
        raise ConfigurationError(
            "RetryPolicy needs 0 <= backoff_base <= backoff_max (finite seconds), not "
            f"{retry.backoff_base!r} and {retry.backoff_max!r}"
        )


def check_budget_settings(
    rate_limit: object, rate_period: object, pacing: object, bulk_reserve: object
) -> None:
    """Raise ConfigurationError unless the budget settings are in range."""
    if isinstance(rate_limit, bool) or not isinstance(rate_limit, int) or rate_limit < 1:
        raise ConfigurationError(f"rate_limit must be an int >= 1 (requests), not {rate_limit!r}")
    if not positive_seconds(rate_period):
        raise ConfigurationError(
            f"rate_period must be a number of seconds > 0, not {rate_period!r}"
        )
    if pacing not in ("burst", "smooth"):
        raise ConfigurationError(f"pacing must be 'burst' or 'smooth', not {pacing!r}")
    if (
        isinstance(bulk_reserve, bool)
        or not isinstance(bulk_reserve, (int, float))
        or not 0.0 <= bulk_reserve < 1.0
    ):
        raise ConfigurationError(
            f"bulk_reserve is a fraction from 0 up to (not including) 1, not {bulk_reserve!r}"
        )


def positive_seconds(value: object) -> bool:
    """Whether ``value`` is a finite number of seconds > 0."""
    return (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(value)
        and value > 0
    )
