"""User: a staff account of the CloudOnex install (``/users``)."""

from __future__ import annotations

from datetime import datetime

import attrs

from ._base import Model


class Secret(str):
    """A secret the server sent (a password hash, a token): usable, never shown in a repr."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Secret('<redacted>')"


@attrs.frozen(kw_only=True)
class User(Model):
    """A staff user. ``user_type`` is the role (shipped servers take a role id on create).

    Shipped servers send the password hash and login tokens with every user; they are
    kept in ``extra`` as :class:`Secret` values, which never show in a repr or a log.
    """

    username: str | None = None
    fullname: str | None = None
    email: str | None = None
    user_type: str | None = None
    phone: str | None = None
    status: str | None = None
    created_at: datetime | None = None
    last_login: datetime | None = None
