"""The web services guide's task queue (``tasks.py``, Dramatiq) with ``max_wait=0``: fail fast.

Jobs run against a sandbox that allows ``ALLOWED`` requests per window, all queued at
the start of a window. The first ``ALLOWED`` succeed at once; each of the others is
refused at once and rescheduled to the window's end: its Retry delay is the error's
``retry_after``, which is never early (in later windows the limiter may estimate the
window's length, late rather than early), until every job ran; none is lost or run
twice.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import dramatiq
import pytest

from cloudonex_async import RateLimitError

from .conftest import SandboxFactory
from .docs_examples import MODULES

pytestmark = [pytest.mark.redis, pytest.mark.slow]

ALLOWED = 3
JOBS = 7
WINDOW = 2.0


@attrs.frozen
class PutBack:
    """A job a Retry put back: its email, the Retry's delay, the error, when it was raised."""

    email: str
    delay: float  # seconds
    error: RateLimitError
    raised: float


class Reschedules(dramatiq.Middleware):
    """Records each job a Retry put back."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[PutBack] = []

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        """Note a Retry, its delay and the RateLimitError it was raised from."""
        if isinstance(exception, dramatiq.Retry) and exception.delay is not None:
            error = exception.__context__  # `raise Retry(...) from None` keeps it here
            assert isinstance(error, RateLimitError), error
            email = str(message.args[1])
            with self.lock:
                self.seen.append(PutBack(email, exception.delay / 1000, error, time.time()))


@pytest.fixture
def tasks(tmp_path: Path, redis_url: str) -> Iterator[ModuleType]:
    """The guide's tasks.py, imported, its broker on the tests' Redis."""
    path = tmp_path / "tasks.py"
    code = MODULES["tasks.py"]
    assert "redis://localhost:6379/0" in code
    path.write_text(code.replace("redis://localhost:6379/0", redis_url), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("readme_tasks", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["readme_tasks"] = module
    spec.loader.exec_module(module)
    try:
        module.broker.flush_all()
        yield module
    finally:
        module.broker.flush_all()
        module.broker.close()
        del sys.modules["readme_tasks"]


async def test_jobs_beyond_the_budget_are_rescheduled_to_its_return(
    tasks: ModuleType, make_sandbox: SandboxFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = await make_sandbox(rate_limit=ALLOWED, rate_period=WINDOW)
    monkeypatch.setenv("CLOUDONEX_BASE_URL", sandbox.base_url)
    monkeypatch.setenv("CLOUDONEX_API_KEY", sandbox.api_key)
    reschedules = Reschedules()
    tasks.broker.add_middleware(reschedules)
    worker = dramatiq.Worker(tasks.broker, worker_timeout=50)
    worker.start()
    try:
        # Queue every job just after a window starts (the sandbox aligns them to the clock).
        await asyncio.sleep(WINDOW - time.time() % WINDOW + 0.05)
        window_end = (math.floor(time.time() / WINDOW) + 1) * WINDOW
        for n in range(JOBS):
            tasks.add_customer.send(f"Customer {n}", f"c{n}@example.com")
        queue = tasks.add_customer.queue_name
        await asyncio.to_thread(tasks.broker.join, queue, timeout=30_000)
    finally:
        await asyncio.to_thread(worker.stop)
    log = [(r.status, round(r.at - window_end, 2)) for r in sandbox.requests]
    emails = sorted(str(record["email"]) for record in sandbox.records("customers"))
    assert emails == [f"c{n}@example.com" for n in range(JOBS)], log  # none lost, none twice
    # The first window: ALLOWED jobs ran at once, each other one was put back to its Reset.
    first = [r for r in sandbox.requests if r.at < window_end and r.status == 201]
    assert len(first) == ALLOWED, log
    put_back = [p for p in reschedules.seen if p.raised < window_end]
    assert len(put_back) == JOBS - ALLOWED, (reschedules.seen, log)
    for job in put_back:
        assert job.error.retry_after == pytest.approx(window_end - job.raised, abs=0.3), job
    for job in reschedules.seen:  # later windows too: deferred by retry_after, never early
        retry_after = job.error.retry_after
        assert retry_after is not None, job
        assert job.delay == pytest.approx(retry_after, abs=0.001), job
        reset_at = job.error.reset_at
        assert reset_at is not None, job
        assert reset_at.tzinfo is not None, job
        assert reset_at.timestamp() == pytest.approx(job.raised + retry_after, abs=0.3), job
        raised_in_window_ending = (math.floor(job.raised / WINDOW) + 1) * WINDOW
        assert job.raised + retry_after >= raised_in_window_ending - 0.1, (job, log)
