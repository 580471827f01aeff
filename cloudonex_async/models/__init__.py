"""attrs models of the ten CloudOnex resources."""

from ._base import Model
from .customer import Customer
from .invoice import Invoice, InvoiceItem
from .lead import Lead
from .order import Order
from .product import Product
from .purchase import Purchase
from .quote import Quote
from .supplier import Supplier
from .ticket import Ticket
from .transaction import Transaction

__all__ = [
    "Customer",
    "Invoice",
    "InvoiceItem",
    "Lead",
    "Model",
    "Order",
    "Product",
    "Purchase",
    "Quote",
    "Supplier",
    "Ticket",
    "Transaction",
]
