"""cloudonex_async: an asyncio client for the CloudOnex Business Suite REST API v2.

::

    from cloudonex_async import Client

    async with Client(base_url="https://crm.example.com", api_key="KEY") as client:
        customer = await client.customers.create({"account": "Jane Doe"})
"""

import importlib.metadata as _metadata

from ._bulk import BulkProgress, BulkResult, Outcome
from ._client import Client
from ._clock import Clock, SystemClock
from ._config import UNSET, ClientConfig
from ._pagination import Page, Paginator
from ._protocol import JSONValue, RateLimitInfo, RetryPolicy
from ._ratelimit import RateLimitStatus
from .errors import (
    APIError,
    AuthenticationError,
    BulkError,
    CloudOnexError,
    ConfigurationError,
    NotFoundError,
    OutcomeUnknownError,
    PaginationError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
    ResponseParseError,
    ServerError,
    TransportError,
    ValidationError,
)
from .limiters import LocalLimiter, RedisLimiter
from .models import (
    Customer,
    Invoice,
    InvoiceItem,
    Lead,
    Model,
    Order,
    Product,
    Purchase,
    Quote,
    Supplier,
    Ticket,
    Transaction,
)

try:
    __version__ = _metadata.version("cloudonex-async")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "UNSET",
    "APIError",
    "AuthenticationError",
    "BulkError",
    "BulkProgress",
    "BulkResult",
    "Client",
    "ClientConfig",
    "Clock",
    "CloudOnexError",
    "ConfigurationError",
    "Customer",
    "Invoice",
    "InvoiceItem",
    "JSONValue",
    "Lead",
    "LocalLimiter",
    "Model",
    "NotFoundError",
    "Order",
    "Outcome",
    "OutcomeUnknownError",
    "Page",
    "PaginationError",
    "Paginator",
    "PermissionDeniedError",
    "Product",
    "Purchase",
    "Quote",
    "RateLimitError",
    "RateLimitInfo",
    "RateLimitStatus",
    "RedisLimiter",
    "RequestTimeoutError",
    "ResponseParseError",
    "RetryPolicy",
    "ServerError",
    "Supplier",
    "SystemClock",
    "Ticket",
    "Transaction",
    "TransportError",
    "ValidationError",
    "__version__",
]
