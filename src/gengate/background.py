"""Background tasks whose failure is never lost: reported once, when it happens.

asyncio holds only a weak reference to a task, and reports an exception nobody retrieved as
"Task exception was never retrieved" whenever the task happens to be collected: late, with a
traceback, or not at all. Every task gengate starts and does not await at once goes through
:func:`spawn`, which holds it while it runs and reports its failure in one line: the error and
its cause where the world around us failed (a full disk, a store or a network that does not
answer), a traceback only for what can only be a bug.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
from collections.abc import Coroutine
from typing import Any, TypeVar

from gengate.domain.errors import Unavailable

T = TypeVar("T")
log = logging.getLogger(__name__)

#: Failures of what gengate runs on, not of gengate: worth one line, not a traceback.
_EXPECTED: tuple[type[BaseException], ...] = (OSError, TimeoutError, sqlite3.Error, Unavailable)
#: Drivers and clients whose errors are of that kind too (imported by name: they are optional).
_EXPECTED_PACKAGES = frozenset({"asyncpg", "psycopg", "httpx", "httpcore", "redis", "botocore"})

#: Tasks running now: the strong references asyncio does not keep.
_running: set[asyncio.Task[Any]] = set()


async def stop(task: asyncio.Task[Any] | None) -> None:
    """Cancel a background loop (a health poll, a listener) and wait until it has ended."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def spawn(coro: Coroutine[Any, Any, T], what: str, *, name: str | None = None) -> asyncio.Task[T]:
    """Run `coro` in the background; `what` names it in the line that reports its failure
    (`"run of task task_..."`), `name` is the task's name (defaults to `what`)."""
    task = asyncio.create_task(coro, name=name or what)
    _running.add(task)
    task.add_done_callback(functools.partial(_settled, what))
    return task


def _settled(what: str, task: asyncio.Task[Any]) -> None:
    _running.discard(task)
    if not task.cancelled() and (exc := task.exception()) is not None:
        report(log, f"{what} failed", exc)


def expected(exc: BaseException) -> bool:
    """Whether `exc` is a failure of the world around gengate rather than a bug in it."""
    if isinstance(exc, _EXPECTED):
        return True
    return type(exc).__module__.partition(".")[0] in _EXPECTED_PACKAGES


def describe(exc: BaseException) -> str:
    """`Type: message`, followed by the cause's the same way (what the disk or the driver said)."""
    text = f"{type(exc).__name__}: {exc}".rstrip(": ")
    cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    if cause is not None and cause is not exc:
        text += f" ({type(cause).__name__}: {cause})".replace(": )", ")")
    return text


def report(logger: logging.Logger, what: str, exc: BaseException) -> None:
    """One ERROR line for an expected failure; the traceback too for an unexpected one."""
    if expected(exc):
        logger.error("%s: %s", what, describe(exc))
    else:
        logger.error("%s: unexpected %s", what, describe(exc), exc_info=exc)
