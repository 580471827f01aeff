"""Customer: a contact (``/customers``)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

import attrs

from ._base import Model


@attrs.frozen(kw_only=True)
class Customer(Model):
    """A customer (contact) record.

    Shipped servers send the customer portal's ``password`` (a bcrypt hash), ``token``,
    ``autologin`` and ``pwresetkey`` with every customer; they are kept in ``extra`` as
    :class:`~cloudonex_async.Secret` values, which are never shown and never sent back.
    """

    secret_fields: ClassVar[frozenset[str]] = frozenset(
        {"password", "token", "autologin", "pwresetkey"}
    )

    account: str | None = None
    email: str | None = None
    phone: str | None = None
    address: str | None = None
    city: str | None = None
    state: str | None = None
    zip: str | None = None
    country: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
