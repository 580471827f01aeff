"""Hostile servers over real loopback: each answer ends in the library's own error, in time,
with memory bounded.

The servers are written here on raw sockets (not the sandbox), so they can do what no
well-behaved server does: stall, cut a body, never end one, inflate one, lie about time.
Each call runs under an outer deadline a few seconds past its own timeout (a hang fails
the test), and memory is measured with tracemalloc where a body could grow.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tracemalloc
import zlib
from collections.abc import Awaitable
from email.utils import formatdate
from functools import cache
from typing import Any

import pytest

from cloudonex_async import (
    Client,
    LocalLimiter,
    PaginationError,
    RateLimitError,
    RequestTimeoutError,
    ResponseParseError,
    ResponseTooLargeError,
    RetryPolicy,
    TransportError,
)
from cloudonex_async.testing import FakeClock

from .conftest import Handler, raw_server

MiB = 1024 * 1024
T0 = 1_700_000_000.0


async def read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str]]:
    """Read one request's head and body; return the request line and the headers."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    length = int(fields.get("Content-Length", "0"))
    if length:
        await reader.readexactly(length)
    return lines[0], {k.lower(): v for k, v in fields.items()}


def head(status: str = "200 OK", **fields: str) -> bytes:
    extra = "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in fields.items())
    return f"HTTP/1.1 {status}\r\n{extra}\r\n".encode()


def answer(body: object, status: str = "200 OK", **fields: str) -> bytes:
    payload = json.dumps(body).encode()
    fields.setdefault("Content_Type", "application/json")
    return head(status, Content_Length=str(len(payload)), **fields) + payload


def client(base_url: str, **options: Any) -> Client:
    options.setdefault("limiter", LocalLimiter())
    options.setdefault("retry", RetryPolicy(attempts=1))
    options.setdefault("timeout", 1.0)
    return Client(base_url=base_url, api_key="k", **options)


async def bounded(call: Awaitable[object], timeout: float) -> object:
    """Await ``call``; a hang past ``timeout`` plus slack fails the test."""
    return await asyncio.wait_for(call, timeout + 5.0)


@contextlib.contextmanager
def peak_memory() -> Any:
    """Measure the peak of Python allocations inside the block, in bytes (``.peak``)."""

    class Peak:
        peak = 0

    tracemalloc.start()
    try:
        yield Peak
    finally:
        Peak.peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


# -- stalls ---------------------------------------------------------------------------


async def test_a_server_that_accepts_and_never_answers_times_out() -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.Event().wait()

    async with raw_server(stall) as url, client(url, timeout=0.5) as c:
        with pytest.raises(RequestTimeoutError) as info:
            await bounded(c.request("GET", "customers"), 0.5)
    assert info.value.request_sent is True


async def test_a_server_that_stalls_mid_body_times_out() -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head(Content_Type="application/json", Content_Length="1000"))
        writer.write(b'{"success": true, "data": [')
        await writer.drain()
        await asyncio.Event().wait()

    async with raw_server(stall) as url, client(url, timeout=5.0, read_timeout=0.3) as c:
        with pytest.raises(RequestTimeoutError):
            await bounded(c.request("GET", "customers"), 0.3)


# -- bodies that do not end, or do not fit --------------------------------------------


async def test_a_50_mb_body_is_refused_with_memory_bounded() -> None:
    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head(Content_Type="application/json", Content_Length=str(50 * MiB)))
        block = b" " * (64 * 1024)
        for _ in range(50 * 16):
            writer.write(block)
            await writer.drain()

    async with raw_server(big) as url, client(url, timeout=10.0, max_response_bytes=4 * MiB) as c:
        with peak_memory() as memory, pytest.raises(ResponseTooLargeError) as info:
            await bounded(c.request("GET", "customers"), 10.0)
    assert "max_response_bytes" in str(info.value)
    assert memory.peak < 6 * MiB  # the cap, not the 50 MB


async def test_a_50_mb_body_chunked_is_cut_at_the_cap_with_memory_bounded() -> None:
    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head(Content_Type="application/json", Transfer_Encoding="chunked"))
        block = b" " * (64 * 1024)
        chunk = f"{len(block):x}\r\n".encode() + block + b"\r\n"
        for _ in range(50 * 16):
            writer.write(chunk)
            await writer.drain()
        writer.write(b"0\r\n\r\n")

    async with raw_server(big) as url, client(url, timeout=10.0, max_response_bytes=4 * MiB) as c:
        with peak_memory() as memory, pytest.raises(ResponseTooLargeError):
            await bounded(c.request("GET", "customers"), 10.0)
    assert memory.peak < 12 * MiB


async def test_an_endless_chunked_body_is_cut_at_the_cap() -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head(Content_Type="application/json", Transfer_Encoding="chunked"))
        chunk = b"4000\r\n" + b"[" * 0x4000 + b"\r\n"
        while True:
            writer.write(chunk)
            await writer.drain()

    async with raw_server(endless) as url, client(url, timeout=10.0, max_response_bytes=MiB) as c:
        with peak_memory() as memory, pytest.raises(ResponseTooLargeError):
            await bounded(c.request("GET", "customers"), 10.0)
    assert memory.peak < 8 * MiB


@cache
def gzip_bomb() -> bytes:
    """200 MB of spaces, gzip-compressed a megabyte at a time (never held whole)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b" " * MiB
    parts = [packer.compress(block) for _ in range(200)]
    return b"".join([*parts, packer.flush()])


async def test_a_small_gzip_body_that_inflates_to_200_mb_is_cut_at_the_cap() -> None:
    bomb = gzip_bomb()
    assert len(bomb) < MiB

    async def inflate(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            head(
                Content_Type="application/json",
                Content_Encoding="gzip",
                Content_Length=str(len(bomb)),
            )
        )
        writer.write(bomb)
        await writer.drain()

    async with raw_server(inflate) as url, client(url, timeout=10.0, max_response_bytes=MiB) as c:
        with peak_memory() as memory, pytest.raises(ResponseTooLargeError):
            await bounded(c.request("GET", "customers"), 10.0)
    assert memory.peak < 8 * MiB  # inflated a chunk at a time: never the 200 MB


async def test_a_connection_reset_mid_body_is_a_transport_error() -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head(Content_Type="application/json", Content_Length="1000"))
        writer.write(b'{"success": true, "data": [')
        await writer.drain()
        writer.transport.abort()

    async with raw_server(reset) as url, client(url) as c:
        with pytest.raises(TransportError) as info:
            await bounded(c.request("GET", "customers"), 1.0)
        assert info.value.request_sent is True
        with pytest.raises(TransportError) as post:  # a POST: it may have been processed
            await bounded(c.customers.create({"account": "A"}), 1.0)
    assert type(post.value).__name__ == "OutcomeUnknownError"


async def test_a_dropped_keep_alive_connection_is_not_resent_behind_the_budgets_back() -> None:
    # aiohttp, left alone, sends an idempotent request once more on a new connection
    # when a reused one drops: a request the budget never granted.
    seen = {"requests": 0}
    fine = answer({"success": True, "data": []})

    async def drop_second(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            seen["requests"] += 1
            if seen["requests"] == 2:
                writer.transport.abort()  # the reused connection drops, unanswered
                return
            writer.write(fine)
            await writer.drain()

    async with raw_server(drop_second) as url, client(url) as c:
        assert await bounded(c.request("GET", "customers"), 1.0) == []
        with pytest.raises(TransportError):
            await bounded(c.request("GET", "customers"), 1.0)  # attempts=1: no retry
        assert c.rate_limit.requests_sent == 2
    assert seen["requests"] == 2  # as many as were granted


@pytest.mark.parametrize(
    ("content_type", "body", "outcome"),
    [
        ("text/html", b'{"success": true, "data": []}', []),
        ("application/json", b"<html><body>Bad Gateway</body></html>", ResponseParseError),
        ("application/octet-stream", b"\x00\x01\x02\xff", ResponseParseError),
    ],
    ids=["json-labelled-html", "html-labelled-json", "binary"],
)
async def test_a_wrong_content_type_is_read_by_what_the_body_is(
    content_type: str, body: bytes, outcome: object
) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head(Content_Type=content_type, Content_Length=str(len(body))) + body)
        await writer.drain()

    async with raw_server(serve) as url, client(url) as c:
        if isinstance(outcome, type):
            with pytest.raises(outcome):
                await bounded(c.request("GET", "customers"), 1.0)
        else:
            assert await bounded(c.request("GET", "customers"), 1.0) == outcome


# -- time that lies -----------------------------------------------------------------------


def sequence(*answers: bytes) -> Handler:
    """Answer successive requests (on any connection) with ``answers``, the last repeated."""
    queue = list(answers)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(queue.pop(0) if len(queue) > 1 else queue[0])
            await writer.drain()

    return serve


@pytest.mark.parametrize(
    "fields",
    [
        {"Retry_After": "999999999999"},
        {"Retry_After": "inf"},
        {"X_RateLimit_Limit": "10", "X_RateLimit_Remaining": "0", "X_RateLimit_Reset": "1e18"},
        {"X_RateLimit_Limit": "10", "X_RateLimit_Remaining": "0", "X_RateLimit_Reset": "inf"},
        {"Retry_After": formatdate(T0 + 10**10, usegmt=True)},
    ],
    ids=["retry-after-far", "retry-after-inf", "reset-far", "reset-inf", "retry-after-date-far"],
)
async def test_a_far_future_or_infinite_wait_is_not_obeyed(fields: dict[str, str]) -> None:
    clock = FakeClock(T0)
    limited = answer({"success": False, "message": "slow down"}, "429 Too Many Requests", **fields)
    fine = answer({"success": True, "data": []})
    async with raw_server(sequence(limited, fine)) as url:
        async with client(
            url, limiter=LocalLimiter(rate_limit=100, rate_period=60, clock=clock)
        ) as c:
            with pytest.raises(RateLimitError) as info:
                await bounded(c.request("GET", "customers"), 1.0)
            # Garbage, not a fact: the configured window stands, and nothing overflows.
            assert info.value.retry_after is None
            assert info.value.reset_at is None
            status = c.rate_limit
            assert status.limit == 100
            assert status.reset_at is None
            # The next call waits for the pause of one configured window, no more.
            assert await bounded(c.request("GET", "customers"), 1.0) == []
            assert clock.time() - T0 <= 60 + 1


async def test_a_date_header_decades_off_does_not_move_the_reset() -> None:
    now = FakeClock(T0)
    ok = answer(
        {"success": True, "data": []},
        X_RateLimit_Limit="50",
        X_RateLimit_Remaining="49",
        X_RateLimit_Reset=str(int(T0) + 2),
        Date="Thu, 01 Jan 1970 00:00:00 GMT",
    )
    async with raw_server(sequence(ok)) as url:
        async with client(url, limiter=LocalLimiter(clock=now)) as c:
            await bounded(c.request("GET", "customers"), 1.0)
            status = c.rate_limit
    assert status.reset_at is not None
    assert abs(status.reset_at.timestamp() - (T0 + 2)) < 1  # not 2083
    assert (status.limit, status.remaining) == (50, 49)


async def test_a_listing_that_cycles_between_two_pages_stops_at_once() -> None:
    pages = [
        answer({"success": True, "data": [{"id": n} for n in range(1, 11)], "meta": meta})
        for meta in ({"total_pages": 1000}, {"total_pages": 1000})
    ]
    page_b = answer(
        {"success": True, "data": [{"id": n} for n in range(11, 21)], "meta": {"total_pages": 1000}}
    )
    served = {"count": 0}
    order = [pages[0], page_b]

    async def cycle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(order[served["count"] % 2])
            served["count"] += 1
            await writer.drain()

    async with raw_server(cycle) as url, client(url) as c:
        with pytest.raises(PaginationError, match="repeats page 1"):
            await bounded(c.customers.list(page_size=10, prefetch=0).collect(), 1.0)
    assert served["count"] == 3  # A, B, A: not the whole budget
