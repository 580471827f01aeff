"""The public names: sorted, complete, and importable."""

from __future__ import annotations

import cloudonex_async
from cloudonex_async import errors, testing

PUBLIC = {
    "Deletion", "FileJournal", "Journal", "JournalEntry", "PlannedChange", "RedisJournal",
    "SyncError", "SyncOutcome", "SyncPlan", "SyncResult",
    "UNSET", "APIError", "AiohttpTransport", "AuthenticationError", "BulkError",
    "BulkProgress", "BulkResult", "Client", "ClientConfig", "Clock", "CloudOnexError",
    "ConfigurationError", "CreatedWithoutIdError", "Customer", "Envelope", "Event",
    "EventKind", "FinancialReport", "Grant", "Invoice", "InvoiceItem", "JSONValue", "Lead",
    "LocalLimiter", "Model", "NotFoundError", "Order", "Outcome", "OutcomeUnknownError",
    "Page", "PaginationError", "Paginator", "PermissionDeniedError", "Product", "Purchase",
    "Quote", "RateLimitError", "RateLimitInfo", "RateLimitStatus", "RawResponse",
    "RedisLimiter", "Request", "RequestTimeoutError", "ResponseParseError",
    "ResponseTooLargeError", "RetryPolicy", "BudgetStoreError", "PoolTimeoutError",
    "close_on_signals", "Diagnosis", "Finding", "InputChangedError",
    "RouteNotFoundError", "Secret", "ServerError", "ServerProfile", "Supplier",
    "SystemClock", "Ticket", "Transaction", "Transport", "TransportError",
    "UnsupportedError", "User", "ValidationError", "Webhook", "__version__",
}  # fmt: skip


def test_the_public_names_are_pinned() -> None:
    names = cloudonex_async.__all__  # ruff (RUF022) keeps it sorted
    assert len(names) == len(set(names))
    assert set(names) == PUBLIC  # a change here is a change of the public API
    public = {n for n in vars(cloudonex_async) if n.isidentifier() and not n.startswith("_")}
    modules = {"cli", "errors", "limiters", "models", "resources", "testing"}  # once imported
    assert public - set(names) <= modules
    for name in names:
        value = getattr(cloudonex_async, name)
        if name == "__version__":
            assert isinstance(value, str)
        elif name not in ("UNSET", "JSONValue", "EventKind"):  # a sentinel and type aliases
            assert value.__module__.startswith("cloudonex_async"), name


def test_every_error_is_exported_and_in_the_tree() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.CloudOnexError)
        assert name in cloudonex_async.__all__


def test_testing_exports() -> None:
    assert sorted(testing.__all__) == testing.__all__
    assert set(testing.__all__) == {
        "FakeClock",
        "Fault",
        "Faults",
        "LoggedRequest",
        "MockTransport",
        "SandboxServer",
        "json_response",
    }


def test_every_public_name_has_a_docstring() -> None:
    for name in cloudonex_async.__all__:
        value = getattr(cloudonex_async, name)
        if isinstance(value, type):
            assert value.__doc__, name
