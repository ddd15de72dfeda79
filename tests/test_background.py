"""A background task's failure is reported once, when it happens, and never as "never retrieved"."""

from __future__ import annotations

import asyncio
import gc
import logging
import sqlite3

import pytest

from gengate.background import spawn
from gengate.domain.errors import Unavailable


async def _fail(exc: BaseException) -> None:
    await asyncio.sleep(0)
    raise exc


async def _settle(task: asyncio.Task[None]) -> None:
    await asyncio.wait([task])
    del task
    gc.collect()  # an unretrieved exception is reported when its task is collected
    await asyncio.sleep(0)


def _store_full() -> Unavailable:
    try:
        raise sqlite3.OperationalError("database or disk is full")
    except sqlite3.OperationalError as cause:
        try:
            raise Unavailable("The task store is unavailable.") from cause
        except Unavailable as exc:
            return exc


async def test_an_expected_failure_is_one_line_without_traceback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await _settle(spawn(_fail(_store_full()), "run of task task_abc"))
    assert [(r.levelno, r.exc_info) for r in caplog.records] == [(logging.ERROR, None)]
    message = caplog.records[0].getMessage()
    assert "run of task task_abc failed" in message
    assert "database or disk is full" in message, "the cause is named"
    assert "never retrieved" not in caplog.text


async def test_a_bug_is_one_record_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await _settle(spawn(_fail(RuntimeError("boom")), "the callback sender"))
    assert len(caplog.records) == 1
    assert caplog.records[0].exc_info is not None
    assert "the callback sender failed" in caplog.records[0].getMessage()
    assert "never retrieved" not in caplog.text


async def test_a_cancelled_or_successful_task_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sleeper = spawn(asyncio.sleep(3600), "sleeping")
    quick = spawn(asyncio.sleep(0), "quick")
    await asyncio.sleep(0)
    sleeper.cancel()
    await asyncio.wait([sleeper, quick])
    assert caplog.records == []
