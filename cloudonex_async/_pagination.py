"""Walking a paginated listing: lazily, with prefetch, and stopping exactly at the end.

The end-of-listing rules live in ``_protocol`` (``read_page``, ``is_last_page``);
this module schedules page fetches and hands out items in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import attrs

from ._protocol import (
    Envelope,
    JSONValue,
    is_last_page,
    known_page_count,
    page_fingerprint,
    read_page,
)
from .errors import ConfigurationError, PaginationError

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 100


@attrs.frozen
class Page(Generic[T]):
    """One page of a listing: its items, its 1-based number and any totals the server sent.

    ``last`` is whether the listing ends with this page.
    """

    items: Sequence[T]
    number: int
    total_records: int | None = None
    total_pages: int | None = None
    last: bool = False


class Paginator(Generic[T]):
    """An async iterator over every item of a listing, fetching pages as needed.

    ``async for item in paginator`` yields items; :meth:`pages` yields whole pages;
    :meth:`collect` returns a list. Every iteration is a fresh walk from page 1.

    Args:
        fetch: sends the request for (page number, page size).
        convert: turns one raw record into an item.
        page_size: records per request (the server's ``limit`` parameter).
        limit: stop after this many items, without fetching any page more than needed.
        prefetch: pages fetched ahead while the caller works on the current one.
        concurrency: pages fetched at once once the server has said how many there are.
    """

    def __init__(
        self,
        fetch: Callable[[int, int], Awaitable[Envelope]],
        convert: Callable[[JSONValue], T],
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        limit: int | None = None,
        prefetch: int = 1,
        concurrency: int = 1,
    ) -> None:
        if page_size < 1 or prefetch < 0 or concurrency < 1 or (limit is not None and limit < 0):
            raise ConfigurationError(
                "page_size and concurrency must be >= 1, prefetch and limit >= 0"
            )
        self._fetch = fetch
        self._convert = convert
        self.page_size = page_size
        self.limit = limit
        self.prefetch = prefetch
        self.concurrency = concurrency

    def __aiter__(self) -> AsyncIterator[T]:
        return self._items()

    async def collect(self) -> list[T]:
        """Return every item (up to ``limit``) as a list."""
        return [item async for item in self]

    async def _items(self) -> AsyncIterator[T]:
        remaining = self.limit
        async with contextlib.aclosing(self.pages()) as pages:
            async for page in pages:
                for item in page.items:
                    if remaining is not None:
                        if remaining <= 0:
                            return
                        remaining -= 1
                    yield item

    async def pages(self) -> AsyncGenerator[Page[T], None]:
        """Yield the listing page by page."""
        if self.limit == 0:
            return
        size = self.page_size
        last_needed = -(-self.limit // size) if self.limit is not None else None
        tasks: dict[int, asyncio.Task[Envelope]] = {}

        def start_through(last: int) -> None:
            if last_needed is not None:
                last = min(last, last_needed)
            for number in range(1, last + 1):
                if number not in tasks and number > done:
                    tasks[number] = asyncio.ensure_future(self._fetch(number, size))

        done = 0
        total_pages: int | None = None
        # Every page seen, by a hash of its records (a few bytes a page, so a long walk
        # stays small): a server that cycles through pages, not only one that repeats
        # the last, is caught before it spends the budget.
        seen: dict[int, int] = {}
        try:
            start_through(1)
            while True:
                number = done + 1
                start_through(number)
                envelope = await tasks.pop(number)
                done = number
                info = read_page(envelope)
                if total_pages is None:
                    total_pages = known_page_count(info, size)
                fingerprint = hash(page_fingerprint(info.items)) if info.items else None
                repeated = seen.get(fingerprint) if fingerprint is not None else None
                if repeated is not None:
                    if number == 2 and total_pages is None:
                        return  # no paging metadata: the server ignores paging entirely
                    raise PaginationError(
                        f"page {number} repeats page {repeated}: the server does not "
                        "advance through this listing; check its paging parameters"
                    )
                if fingerprint is not None:
                    seen[fingerprint] = number
                last = is_last_page(info, number, size) or number == last_needed
                if not last:
                    depth = self.prefetch
                    if total_pages is not None and self.concurrency > 1:
                        depth = max(depth, self.concurrency)
                    horizon = number + depth
                    if total_pages is not None:
                        horizon = min(horizon, total_pages)
                    start_through(horizon)
                yield Page(
                    items=[self._convert(raw) for raw in info.items],
                    number=number,
                    total_records=info.total_records,
                    total_pages=total_pages,
                    last=last,
                )
                if last:
                    return
        finally:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
