"""Client settings, normalised once into a frozen ClientConfig."""

from __future__ import annotations

import enum
import os
import ssl as _ssl
from typing import Final

import attrs

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
from ._ratelimit import (
    DEFAULT_BULK_RESERVE,
    DEFAULT_RATE_LIMIT,
    DEFAULT_RATE_PERIOD,
    Pacing,
)
from .errors import ConfigurationError

DEFAULT_TIMEOUT: Final = 30.0
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
DEFAULT_MAX_CONCURRENCY: Final = 32
ENV_API_KEY: Final = "CLOUDONEX_API_KEY"
ENV_BASE_URL: Final = "CLOUDONEX_BASE_URL"


class _Unset(enum.Enum):
    UNSET = enum.auto()

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset.UNSET
"""Per-call "use the client's default", distinct from None (which means "no limit")."""


@attrs.frozen(kw_only=True)
class ClientConfig:
    """Everything a Client was configured with. The API key is never shown in its repr.

    ``profile`` is what was asked for (``"auto"`` included); ``body_encoding``,
    ``route_style`` and ``item_paths`` are the explicit overrides (None: the profile's).
    """

    site_root: str
    api_key: str = attrs.field(repr=False)
    auth: AuthMode
    profile: ProfileChoice
    body_encoding: BodyEncoding | None
    route_style: RouteStyle | None
    item_paths: ItemPaths | None
    timeout: float
    connect_timeout: float | None
    max_concurrency: int
    max_wait: float | None
    retry: RetryPolicy
    rate_limit: int
    rate_period: float
    pacing: Pacing
    bulk_reserve: float
    ssl: _ssl.SSLContext | bool | None = attrs.field(repr=False)
    user_agent: str

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
    auth: AuthMode,
    profile: ProfileChoice = "documented",
    body_encoding: BodyEncoding | None = None,
    route_style: RouteStyle | None = None,
    item_paths: ItemPaths | None = None,
    timeout: float,
    connect_timeout: float | None,
    max_concurrency: int,
    max_wait: float | None,
    retry: RetryPolicy | None,
    rate_limit: int = DEFAULT_RATE_LIMIT,
    rate_period: float = DEFAULT_RATE_PERIOD,
    pacing: Pacing = "burst",
    bulk_reserve: float = DEFAULT_BULK_RESERVE,
    ssl: _ssl.SSLContext | bool | None,
    allow_insecure_http: bool,
    user_agent: str,
) -> ClientConfig:
    """Check the arguments, fill in the environment defaults, and freeze them.

    Raises:
        ConfigurationError: a value is missing or out of range.
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
    if auth not in ("bearer", "query"):
        raise ConfigurationError(f"auth must be 'bearer' or 'query', not {auth!r}")
    check_choice("profile", profile, PROFILE_CHOICES)
    check_choice("body_encoding", body_encoding, ("json", "form"))
    check_choice("route_style", route_style, ("path", "ng"))
    check_choice("item_paths", item_paths, ("plural", "singular"))
    if pacing not in ("burst", "smooth"):
        raise ConfigurationError(f"pacing must be 'burst' or 'smooth', not {pacing!r}")
    if timeout <= 0 or max_concurrency < 1:
        raise ConfigurationError("timeout must be > 0 and max_concurrency >= 1")
    if max_wait is not None and max_wait < 0:
        raise ConfigurationError("max_wait must be >= 0 seconds, or None to wait as needed")
    return ClientConfig(
        site_root=normalize_base_url(base_url, allow_insecure_http=allow_insecure_http),
        api_key=api_key,
        auth=auth,
        profile=profile,
        body_encoding=body_encoding,
        route_style=route_style,
        item_paths=item_paths,
        timeout=timeout,
        connect_timeout=connect_timeout,
        max_concurrency=max_concurrency,
        max_wait=max_wait,
        retry=retry or RetryPolicy(),
        rate_limit=rate_limit,
        rate_period=rate_period,
        pacing=pacing,
        bulk_reserve=bulk_reserve,
        ssl=ssl,
        user_agent=user_agent,
    )
