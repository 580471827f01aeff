"""The resources of the CloudOnex API v2, each a thin declaration on Resource.

The ten record resources and users; the shipped 4.x dialect's differences (invoice
columns and create fields, user secrets, a broken transactions path) are declared
here too, as hooks of the resource they concern.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from .._profile import ServerProfile
from .._protocol import Envelope
from .._shipped import hide_secrets, invoice_from_shipped, invoice_to_shipped, is_shipped_invoice
from ..errors import CreatedWithoutIdError, ResponseParseError, UnsupportedError
from ..models import (
    Customer,
    Invoice,
    Lead,
    Order,
    Product,
    Purchase,
    Quote,
    Supplier,
    Ticket,
    Transaction,
    User,
)
from ._base import ALL_OPERATIONS, Operation, RecordInput, Resource
from ._reports import Reports, Webhooks


class Customers(Resource[Customer]):
    """``/api/v2/customers``: Customer records."""

    path = "customers"
    item = "customer"
    model = Customer
    created_keys = ("id", "contact_id")
    shipped_sanitizes_text = True


class Invoices(Resource[Invoice]):
    """``/api/v2/invoices``: Invoice records.

    On shipped 4.x servers: ``get`` reads ``invoice/<id>`` (vendor columns mapped onto
    the model, the rest kept in ``extra``); ``create`` sends the vendor's form fields
    (see :func:`cloudonex_async._shipped.invoice_to_shipped` for the defaults) and then
    raises :class:`CreatedWithoutIdError`, because the server names the invoice's last
    item instead of the invoice; ``update`` changes only ``status``; there is no
    listing, and deletes are accepted and ignored (:class:`UnsupportedError`).
    """

    path = "invoices"
    item = "invoice"
    model = Invoice

    def _from_wire(self, data: object) -> object:
        if is_shipped_invoice(data):
            assert isinstance(data, dict)
            return invoice_from_shipped(data)
        return data

    def _to_wire(
        self, profile: ServerProfile, payload: dict[str, object], operation: Operation
    ) -> dict[str, object]:
        if not profile.shipped:
            return payload
        if operation == "create":
            return invoice_to_shipped(payload, today=dt.date.today())
        others = sorted(k for k, v in payload.items() if k != "status" and v is not None)
        if others:
            raise UnsupportedError(
                "shipped CloudOnex servers change only an invoice's status; "
                f"{', '.join(others)} cannot be updated there (pass {{'status': ...}} "
                "alone); nothing was sent",
                resource=self.path,
                operation="update",
                profile=profile.name,
            )
        return {"status": payload.get("status")}

    def _created_id(self, envelope: Envelope, request: str) -> int:
        data = envelope.data
        if envelope.legacy and isinstance(data, dict) and "invoice_id" in data:
            reported = data.get("invoice_id")
            raise CreatedWithoutIdError(
                f"{request}: the invoice was created, but the server's answer names its last "
                f"item ({reported!r}), not the invoice, so its id is unknown. Do not create "
                "it again: find it in the CloudOnex admin",
                resource=self.path,
                reported_id=int(str(reported)) if str(reported).isdigit() else None,
            )
        return super()._created_id(envelope, request)


class Transactions(Resource[Transaction]):
    """``/api/v2/transactions``: Transaction records."""

    path = "transactions"
    item = "transaction"
    model = Transaction
    shipped_unsupported = (
        "its transactions path answers the customer list (a defect of the 4.x code), "
        "so no transaction can be read from it"
    )

    def _from_wire(self, data: object) -> object:
        # Shipped code answers transactions with customer rows: never read one as a
        # transaction, whatever profile the client was given.
        if isinstance(data, dict) and "account" in data and "amount" not in data:
            raise ResponseParseError(
                "the server answered a customer record where a transaction was expected "
                "(shipped CloudOnex 4.x code answers transactions with the customer list); "
                "this server has no transactions API: use profile='auto' to detect it",
                status=200,
            )
        return data


class Quotes(Resource[Quote]):
    """``/api/v2/quotes``: Quote records."""

    path = "quotes"
    item = "quote"
    model = Quote


class Products(Resource[Product]):
    """``/api/v2/products``: Product records."""

    path = "products"
    item = "product"
    model = Product


class Orders(Resource[Order]):
    """``/api/v2/orders``: Order records."""

    path = "orders"
    item = "order"
    model = Order


class Leads(Resource[Lead]):
    """``/api/v2/leads``: Lead records."""

    path = "leads"
    item = "lead"
    model = Lead


class Suppliers(Resource[Supplier]):
    """``/api/v2/suppliers``: Supplier records."""

    path = "suppliers"
    item = "supplier"
    model = Supplier
    created_keys = ("id", "contact_id")


class Purchases(Resource[Purchase]):
    """``/api/v2/purchases``: Purchase records."""

    path = "purchases"
    item = "purchase"
    model = Purchase


class Users(Resource[User]):
    """``/api/v2/users``: staff users (list, get and create only).

    Shipped servers send each user's password hash and tokens; they stay in ``extra``
    as :class:`~cloudonex_async.models.Secret` values, never shown in a repr or log.
    A shipped server creates users from form fields ``username``, ``fullname``,
    ``password`` and ``user_type`` (a role id).
    """

    path = "users"
    item = "user"
    model = User
    operations: frozenset[Operation] = frozenset({"list", "get", "create"})
    created_keys = ("id", "user_id")
    shipped_sanitizes_text = True

    def _from_wire(self, data: object) -> object:
        data = super()._from_wire(data)
        if isinstance(data, dict):
            return hide_secrets(data)
        return data


class Tickets(Resource[Ticket]):
    """``/api/v2/tickets``: Ticket records."""

    path = "tickets"
    item = "ticket"
    model = Ticket


RECORD_RESOURCES: tuple[type[Resource[Any]], ...] = (
    Customers,
    Invoices,
    Transactions,
    Quotes,
    Products,
    Orders,
    Leads,
    Suppliers,
    Purchases,
    Tickets,
)
"""The ten record resources, in the vendor's order (``Client`` has each as its ``path``)."""

__all__ = [
    "ALL_OPERATIONS",
    "RECORD_RESOURCES",
    "Customers",
    "Invoices",
    "Leads",
    "Orders",
    "Products",
    "Purchases",
    "Quotes",
    "RecordInput",
    "Reports",
    "Resource",
    "Suppliers",
    "Tickets",
    "Transactions",
    "Users",
    "Webhooks",
]
