"""Structured concurrency for jobs: a task group whose failure is its first error.

``asyncio.TaskGroup`` on Python 3.11+, the ``taskgroup`` backport on 3.10. A failed
group raises an ``ExceptionGroup``; callers of a job expect the error itself (a
``ServerError``, the caller's own exception), so :func:`task_group` raises the first
error of the group, unwrapped.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator

if sys.version_info >= (3, 11):
    from asyncio import TaskGroup
else:  # pragma: no cover - the backports, on 3.10
    from exceptiongroup import BaseExceptionGroup
    from taskgroup import TaskGroup

__all__ = ["TaskGroup", "first_error", "task_group"]


def first_error(error: BaseException) -> BaseException:
    """The first error of a (nested) exception group that is not a cancellation."""
    while isinstance(error, BaseExceptionGroup):
        real = [e for e in error.exceptions if not isinstance(e, asyncio.CancelledError)]
        error = (real or list(error.exceptions))[0]
    return error


@contextlib.asynccontextmanager
async def task_group() -> AsyncIterator[TaskGroup]:
    """A TaskGroup that raises its first error itself instead of an ExceptionGroup.

    Every task of the group is over when the block exits, whichever way it exits.
    """
    try:
        async with TaskGroup() as group:
            yield group
    except BaseExceptionGroup as failure:
        raise first_error(failure) from None
