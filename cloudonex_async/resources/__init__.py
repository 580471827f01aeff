"""The ten resources of the CloudOnex API v2, each a thin declaration on Resource."""

from __future__ import annotations

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
)
from ._base import RecordInput, Resource


class Customers(Resource[Customer]):
    """``/api/v2/customers``: Customer records."""

    path = "customers"
    model = Customer


class Invoices(Resource[Invoice]):
    """``/api/v2/invoices``: Invoice records."""

    path = "invoices"
    model = Invoice


class Transactions(Resource[Transaction]):
    """``/api/v2/transactions``: Transaction records."""

    path = "transactions"
    model = Transaction


class Quotes(Resource[Quote]):
    """``/api/v2/quotes``: Quote records."""

    path = "quotes"
    model = Quote


class Products(Resource[Product]):
    """``/api/v2/products``: Product records."""

    path = "products"
    model = Product


class Orders(Resource[Order]):
    """``/api/v2/orders``: Order records."""

    path = "orders"
    model = Order


class Leads(Resource[Lead]):
    """``/api/v2/leads``: Lead records."""

    path = "leads"
    model = Lead


class Suppliers(Resource[Supplier]):
    """``/api/v2/suppliers``: Supplier records."""

    path = "suppliers"
    model = Supplier


class Purchases(Resource[Purchase]):
    """``/api/v2/purchases``: Purchase records."""

    path = "purchases"
    model = Purchase


class Tickets(Resource[Ticket]):
    """``/api/v2/tickets``: Ticket records."""

    path = "tickets"
    model = Ticket


__all__ = [
    "Customers",
    "Invoices",
    "Leads",
    "Orders",
    "Products",
    "Purchases",
    "Quotes",
    "RecordInput",
    "Resource",
    "Suppliers",
    "Tickets",
    "Transactions",
]
