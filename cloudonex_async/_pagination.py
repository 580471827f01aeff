"""Walking a paginated listing: lazily, with prefetch, and stopping exactly at the end.

The end-of-listing rules live in ``_protocol`` (``read_page``, ``is_last_page``);
this module schedules page fetches, learns a server's real page size, and hands out
items in order.
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
    PageInfo,
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


@attrs.define
class ServedPageSize:
    """The most records a page of one listing holds on its server, once learned.

    A server may cap its page size silently (asked for 100, it serves 50). Once a walk
    has shown the cap (a short page that was not the end), later walks ask for that
    size, and totals are divided by it.
    """

    value: int | None = None


class Paginator(Generic[T]):
    """An async iterator over every item of a listing, fetching pages as needed.

    ``async for item in paginator`` yields items; :meth:`pages` yields whole pages;
    :meth:`collect` returns a list. Every iteration is a fresh walk from page 1.

    A walk ends only where the end is proven: an empty page, or the totals the server
    sent. A page shorter than asked for is not the end by itself (servers cap their
    page size silently): without totals, one more page is asked for.

    Args:
        fetch: sends the request for (page number, page size).
        convert: turns one raw record into an item.
        page_size: records per request (the server's ``limit`` parameter).
        limit: stop after this many items, without fetching any page more than needed.
        prefetch: pages fetched ahead while the caller works on the current one.
        concurrency: pages fetched at once once the server has said how many there are.
        served: where the server's real page size is learned and remembered (shared by
            the walks of one resource).
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
        served: ServedPageSize | None = None,
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
        self._served = served if served is not None else ServedPageSize()

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
        walk = _Walk(self.page_size, self.limit, self._served.value)
        tasks: dict[int, asyncio.Task[Envelope]] = {}

        def start(numbers: range) -> None:
            for number in numbers:
                if number not in tasks:
                    tasks[number] = asyncio.ensure_future(self._fetch(number, walk.size))

        # Every page seen, by a hash of its records (a few bytes a page, so a long walk
        # stays small): a server that cycles through pages, not only one that repeats
        # the last, is caught before it spends the budget.
        seen: dict[int, int] = {}
        try:
            while True:
                number = walk.done + 1
                start(range(number, number + 1))
                envelope = await tasks.pop(number)
                info = read_page(envelope)
                fingerprint = hash(page_fingerprint(info.items)) if info.items else None
                repeated = seen.get(fingerprint) if fingerprint is not None else None
                if repeated is not None:
                    if number == 2 and walk.total_pages is None:
                        return  # no paging metadata: the server ignores paging entirely
                    raise PaginationError(
                        f"page {number} repeats page {repeated}: the server does not "
                        "advance through this listing; check its paging parameters"
                    )
                if fingerprint is not None:
                    seen[fingerprint] = number
                last = walk.read(info)
                if walk.learned is not None:
                    self._served.value = walk.learned
                if not last:
                    depth = self.prefetch
                    if walk.total_pages is not None and self.concurrency > 1:
                        depth = max(depth, self.concurrency)
                    start(walk.ahead(depth))
                yield Page(
                    items=[self._convert(raw) for raw in info.items],
                    number=number,
                    total_records=info.total_records,
                    total_pages=walk.total_pages,
                    last=last,
                )
                if last:
                    return
        finally:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)


class _Walk:
    """Where one walk through a listing stands: what to ask for, and whether it is over.

    Pure bookkeeping (no I/O): :meth:`read` takes each page in order.
    """

    def __init__(self, asked: int, limit: int | None, learned: int | None) -> None:
        self.limit = limit
        # A cap learned by an earlier walk: ask for no more than the server serves.
        self.size = min(asked, learned) if learned else asked
        self.done = 0  # pages read
        self.items = 0  # records read
        self.total_pages: int | None = None
        self.learned: int | None = None  # a cap this walk has shown, to remember
        self._short_first: int | None = None

    def read(self, info: PageInfo) -> bool:
        """Take the next page; return whether the listing (or the limit) ends with it."""
        count = len(info.items)
        number = self.done + 1
        last = is_last_page(info, number, seen=self.items)
        if number == 1 and count and count != self.size and not last:
            # Not the size asked for, yet not the end (or not proven to be): the server
            # has a page size of its own, often a silent cap. Page 2 on asks for what
            # page 1 held, so that both ways a server may count its offsets give the
            # same records, and totals are counted with it.
            if count < self.size:
                self._short_first = count
            self.size = count
        elif number == 2 and self._short_first is not None and count > 0:
            # Page 1 was short, yet more followed: a cap, remembered for later walks.
            # (Totals alone do not prove it: some count rows that no page shows.)
            self.learned = self._short_first
        if self.total_pages is None:
            self.total_pages = known_page_count(info, self.size)
        self.done = number
        self.items += count
        return last or (self.limit is not None and self.items >= self.limit)

    def ahead(self, depth: int) -> range:
        """The page numbers to have in flight after the current one."""
        horizon = self.done + depth
        if self.total_pages is not None:
            horizon = min(horizon, self.total_pages)
        if self.limit is not None:
            horizon = min(horizon, self.done + -(-(self.limit - self.items) // self.size))
        return range(self.done + 1, horizon + 1)
