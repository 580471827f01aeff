"""cloudonex_async: an asyncio client for the CloudOnex Business Suite REST API v2.

::

    from cloudonex_async import Client

    async with Client(base_url="https://crm.example.com", api_key="KEY") as client:
        customer = await client.customers.create({"account": "Jane Doe"})
        async for invoice in client.invoices.list(status="Unpaid"):
            print(invoice.invoice_number, invoice.amount)
        result = await client.customers.sync(rows, key="email", journal="sync.journal")

Where to look:

- :class:`Client`: the session (one per application), its budget (``rate_limit``) and
  ``client.<resource>`` for the ten resources, ``users``, ``reports`` and ``webhooks``.
- Each resource: ``get``, ``create``, ``update``, ``delete``, ``list`` (a
  :class:`Paginator`), ``bulk_create``/``bulk_update``/``bulk_delete`` (a
  :class:`BulkResult`) and ``sync`` (a :class:`SyncResult`, or a :class:`SyncPlan`
  with ``dry_run=True``).
- :mod:`cloudonex_async.errors`: every exception, under :class:`CloudOnexError`.
- :func:`close_on_signals`: a web service's prompt shutdown (the client closed on Ctrl-C,
  before the server waits for its handlers).
- :class:`LocalLimiter` and :class:`RedisLimiter`: the budget, in one process or many;
  :class:`FileJournal` and :class:`RedisJournal`: where long jobs keep their state.
- :mod:`cloudonex_async.testing`: the sandbox server, ``MockTransport`` and pytest
  fixtures; :mod:`cloudonex_async.cli`: the ``cloudonex`` command line.
"""

import importlib.metadata as _metadata

from ._client import Client
from ._clock import Clock, SystemClock
from ._config import UNSET, ClientConfig
from ._doctor import Diagnosis
from ._events import Event, EventKind
from ._findings import Finding
from ._journal import FileJournal, Journal, JournalEntry, RedisJournal
from ._outcomes import (
    BulkProgress,
    BulkResult,
    Deletion,
    Outcome,
    PlannedChange,
    SyncOutcome,
    SyncPlan,
    SyncResult,
)
from ._pagination import Page, Paginator
from ._profile import ServerProfile
from ._protocol import Envelope, JSONValue, RateLimitInfo, RawResponse, Request, RetryPolicy
from ._ratelimit import Grant, RateLimitStatus
from ._shutdown import close_on_signals
from ._transport import AiohttpTransport, Transport
from .errors import (
    APIError,
    AuthenticationError,
    BudgetStoreError,
    BulkError,
    CloudOnexError,
    ConfigurationError,
    CreatedWithoutIdError,
    InputChangedError,
    NotFoundError,
    OutcomeUnknownError,
    PaginationError,
    PermissionDeniedError,
    PoolTimeoutError,
    RateLimitError,
    RequestTimeoutError,
    ResponseParseError,
    ResponseTooLargeError,
    RouteNotFoundError,
    ServerError,
    SyncError,
    TransportError,
    UnsupportedError,
    ValidationError,
)
from .limiters import LocalLimiter, RedisLimiter
from .models import (
    Customer,
    FinancialReport,
    Invoice,
    InvoiceItem,
    Lead,
    Model,
    Order,
    Product,
    Purchase,
    Quote,
    Secret,
    Supplier,
    Ticket,
    Transaction,
    User,
    Webhook,
)

try:
    __version__ = _metadata.version("cloudonex-async")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "UNSET",
    "APIError",
    "AiohttpTransport",
    "AuthenticationError",
    "BudgetStoreError",
    "BulkError",
    "BulkProgress",
    "BulkResult",
    "Client",
    "ClientConfig",
    "Clock",
    "CloudOnexError",
    "ConfigurationError",
    "CreatedWithoutIdError",
    "Customer",
    "Deletion",
    "Diagnosis",
    "Envelope",
    "Event",
    "EventKind",
    "FileJournal",
    "FinancialReport",
    "Finding",
    "Grant",
    "InputChangedError",
    "Invoice",
    "InvoiceItem",
    "JSONValue",
    "Journal",
    "JournalEntry",
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
    "PlannedChange",
    "PoolTimeoutError",
    "Product",
    "Purchase",
    "Quote",
    "RateLimitError",
    "RateLimitInfo",
    "RateLimitStatus",
    "RawResponse",
    "RedisJournal",
    "RedisLimiter",
    "Request",
    "RequestTimeoutError",
    "ResponseParseError",
    "ResponseTooLargeError",
    "RetryPolicy",
    "RouteNotFoundError",
    "Secret",
    "ServerError",
    "ServerProfile",
    "Supplier",
    "SyncError",
    "SyncOutcome",
    "SyncPlan",
    "SyncResult",
    "SystemClock",
    "Ticket",
    "Transaction",
    "Transport",
    "TransportError",
    "UnsupportedError",
    "User",
    "ValidationError",
    "Webhook",
    "__version__",
    "close_on_signals",
]
