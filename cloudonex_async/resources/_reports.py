"""The two endpoints that are not record collections: financial reports and webhooks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .._convert import CONVERTER
from .._protocol import created_id
from .._ratelimit import Priority
from ..errors import ConfigurationError, OutcomeUnknownError, ResponseParseError
from ..models import FinancialReport, Webhook
from ._api import ClientAPI


class Reports:
    """``/api/v2/reports``: read-only reports."""

    def __init__(self, client: ClientAPI) -> None:
        self._client = client

    def __repr__(self) -> str:
        return "<Reports /api/v2/reports>"

    async def financial(
        self, *, year: int, month: int, priority: Priority = "interactive"
    ) -> FinancialReport:
        """Return one month's income, expenses, profit and outstanding invoice amount.

        Raises:
            ConfigurationError: ``month`` is not 1 to 12.
            UnsupportedError: the server has no reports (shipped 4.x code has none).
        """
        if not 1 <= month <= 12 or not 1900 <= year <= 9999:
            raise ConfigurationError(f"year and month must name a month, got {year}-{month}")
        envelope = await self._client.call(
            "GET", "reports/financial", params={"year": year, "month": month}, priority=priority
        )
        data = envelope.data
        if not isinstance(data, Mapping):
            raise ResponseParseError(
                "GET reports/financial answered something other than one report", status=200
            )
        return CONVERTER.structure({"year": year, "month": month, **data}, FinancialReport)


class Webhooks:
    """``/api/v2/webhooks``: subscriptions the server calls back."""

    def __init__(self, client: ClientAPI) -> None:
        self._client = client

    def __repr__(self) -> str:
        return "<Webhooks /api/v2/webhooks>"

    async def create(
        self, *, url: str, events: Sequence[str], priority: Priority = "interactive"
    ) -> Webhook:
        """Subscribe ``url`` to ``events`` and return the webhook.

        Raises:
            ValidationError: the server refused the URL or an event name.
            UnsupportedError: the server has no webhooks (shipped 4.x code has none).
        """
        if isinstance(events, str):
            raise ConfigurationError("events is a list of event names, not one string")
        body = {"url": url, "events": list(events)}
        envelope = await self._client.call("POST", "webhooks", body=body, priority=priority)
        data = envelope.data
        new_id = created_id(data, ("id", "webhook_id"))
        if new_id is None:
            raise OutcomeUnknownError(
                "POST webhooks answered without a valid id for the new webhook: it may or "
                "may not exist; list your webhooks in the CloudOnex admin before creating it "
                "again",
                method="POST",
                url="webhooks",
                reason="the answer named no valid id",
            )
        record = {**body, **data} if isinstance(data, Mapping) else body
        return CONVERTER.structure({**record, "id": new_id}, Webhook)
