"""attrs models of the CloudOnex records: the ten resources, users, reports and webhooks."""

from .._secret import Secret
from ._base import Model
from .customer import Customer
from .invoice import Invoice, InvoiceItem
from .lead import Lead
from .order import Order
from .product import Product
from .purchase import Purchase
from .quote import Quote
from .report import FinancialReport
from .supplier import Supplier
from .ticket import Ticket
from .transaction import Transaction
from .user import User
from .webhook import Webhook

__all__ = [
    "Customer",
    "FinancialReport",
    "Invoice",
    "InvoiceItem",
    "Lead",
    "Model",
    "Order",
    "Product",
    "Purchase",
    "Quote",
    "Secret",
    "Supplier",
    "Ticket",
    "Transaction",
    "User",
    "Webhook",
]
