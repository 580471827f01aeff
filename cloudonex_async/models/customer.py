"""Customer: a contact (``/customers``)."""

from __future__ import annotations

from datetime import datetime

import attrs

from ._base import Model


@attrs.frozen(kw_only=True)
class Customer(Model):
    """A customer (contact) record."""

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
