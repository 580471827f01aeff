"""Server profiles: how the requests to one CloudOnex server look on the wire.

The vendor's page documents one API; the CloudOnex 4.x code that real installs run
answers differently (form bodies only, singular item paths, the ``?ng=`` route on hosts
without URL rewriting, no paging, no batch endpoint). A :class:`ServerProfile` names
those choices once, so the request builder and the resources read them from one place.
"""

from __future__ import annotations

from typing import Final, Literal

import attrs

from .errors import ConfigurationError

ProfileName = Literal["documented", "shipped"]
ProfileChoice = Literal["documented", "shipped", "auto"]
BodyEncoding = Literal["json", "form"]
RouteStyle = Literal["path", "ng"]
ItemPaths = Literal["plural", "singular"]
AuthMode = Literal["bearer", "query"]

PROFILE_CHOICES: Final = ("documented", "shipped", "auto")


@attrs.frozen(kw_only=True)
class ServerProfile:
    """What one server expects, decided once per client.

    Attributes:
        name: ``"documented"`` (the vendor page's API) or ``"shipped"`` (the deployed
            CloudOnex 4.x code).
        body_encoding: ``"json"`` bodies, or ``"form"`` fields (``items[0][amount]``).
        route_style: ``"path"`` (``/api/v2/customers``, which needs URL rewriting on the
            host) or ``"ng"`` (``/?ng=api/v2/customers``, which works everywhere).
        item_paths: ``"plural"`` (``customers/7``, ``POST customers``) or ``"singular"``
            (``customer/7``, ``POST customer``); listings are plural either way.
        paged: whether listings take ``page``/``limit`` (shipped code returns every row).
        batch: whether ``POST batch/<resource>`` may exist (None: ask the server once).
    """

    name: ProfileName
    body_encoding: BodyEncoding
    route_style: RouteStyle
    item_paths: ItemPaths
    paged: bool = True
    batch: bool | None = None

    @property
    def shipped(self) -> bool:
        """Whether the server runs the deployed 4.x code (its answer shapes and quirks)."""
        return self.name == "shipped"

    def describe(self) -> str:
        """One line for logs and error messages."""
        return (
            f"profile {self.name!r} ({self.body_encoding} bodies, {self.route_style} routes, "
            f"{self.item_paths} item paths)"
        )


def make_profile(
    name: ProfileName,
    *,
    auth: AuthMode = "bearer",
    body_encoding: BodyEncoding | None = None,
    route_style: RouteStyle | None = None,
    item_paths: ItemPaths | None = None,
) -> ServerProfile:
    """Return the profile ``name`` with the caller's per-part overrides applied.

    Without an override, ``auth="query"`` keeps the vendor page's form of its alternative,
    ``/?api_key=KEY&ng=api/v2/...``, so it implies ``route_style="ng"``.
    """
    if name == "shipped":
        return ServerProfile(
            name=name,
            body_encoding=body_encoding or "form",
            route_style=route_style or "ng",
            item_paths=item_paths or "singular",
            paged=False,
            batch=False,
        )
    return ServerProfile(
        name=name,
        body_encoding=body_encoding or "json",
        route_style=route_style or ("ng" if auth == "query" else "path"),
        item_paths=item_paths or "plural",
    )


def check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    """Raise ConfigurationError unless ``value`` is one of ``allowed`` (or None)."""
    if value is not None and value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise ConfigurationError(f"{name} must be one of {choices}, not {value!r}")
