"""User: a staff account of the CloudOnex install (``/users``)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

import attrs

from ._base import Model


@attrs.frozen(kw_only=True)
class User(Model):
    """A staff user. ``user_type`` is the role (shipped servers take a role id on create).

    Shipped servers send the password hash and login tokens with every user
    (``password``, ``pwresetkey``, ``autologin``, ``api_token``, ``at``, ``pin``); they
    are kept in ``extra`` as :class:`~cloudonex_async.Secret` values, which are never
    shown and never sent back.
    """

    secret_fields: ClassVar[frozenset[str]] = frozenset(
        {"password", "pwresetkey", "autologin", "api_token", "at", "pin"}
    )

    username: str | None = None
    fullname: str | None = None
    email: str | None = None
    user_type: str | None = None
    phone: str | None = None
    status: str | None = None
    created_at: datetime | None = None
    last_login: datetime | None = None
