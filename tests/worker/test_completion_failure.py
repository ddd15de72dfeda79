"""A completion the store cannot commit (a full disk) is logged once and the task is not lost.

The store is the real SQLite store; only its writer's COMMIT fails while the "disk" is full,
as SQLite's does (`database or disk is full`), so the writer's and the store's own error paths
run as they would.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sqlite3
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest

from gengate.domain.catalogue import Catalogue, ModelSpec
from gengate.domain.clock import now_ms
from gengate.domain.files import OutputFile
from gengate.domain.ids import new_task_id
from gengate.domain.inputs import EchoInput
from gengate.domain.states import TaskState
from gengate.domain.task import Task
from gengate.files.local import LocalFileStore
from gengate.files.signing import UrlSigner
from gengate.providers.base import RunContext
from gengate.store.sqlite import SQLiteStore
from gengate.store.sqlite.driver import PRAGMAS
from gengate.store.sqlite.writer import SQLiteWriter
from gengate.worker.pool import WorkerPool

FULL = "database or disk is full"


class _FullDisk:
    """A connection whose COMMIT fails as on a full disk; everything else passes through."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "COMMIT":
            raise sqlite3.OperationalError(FULL)
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class FillingWriter(SQLiteWriter):
    """The store's writer, whose disk fills up while `full` is set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.full = threading.Event()

    def _commit(self, conn: sqlite3.Connection, batch: Any) -> None:
        super()._commit(_FullDisk(conn) if self.full.is_set() else conn, batch)  # type: ignore[arg-type]


@dataclass
class OneFunction:
    """A provider whose run is a coroutine function: the whole test double."""

    fn: Callable[[RunContext], Coroutine[Any, Any, Sequence[OutputFile]]]
    inputs: Mapping[str, type[msgspec.Struct]] = msgspec.field(default_factory=lambda: {"echo": EchoInput})

    async def run(self, _input: dict[str, Any], ctx: RunContext) -> Sequence[OutputFile]:
        return await self.fn(ctx)


def echo_task(model: str) -> Task:
    payload = {"mode": "echo", "prompt": None, "data": None, "duration_ms": 0, "fail_code": None}
    return Task(
        id=new_task_id(),
        key_id="key_1",
        model=model,
        mode="echo",
        state=TaskState.PENDING,
        input_json=orjson.dumps(payload).decode(),
        request_json="{}",
        create_time=now_ms(),
    )


async def test_a_completion_that_cannot_be_committed_is_logged_once_and_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    started = asyncio.Event()
    release = asyncio.Event()
    runs = 0

    async def first_run_waits(ctx: RunContext) -> Sequence[OutputFile]:
        nonlocal runs
        runs += 1
        if runs == 1:
            started.set()
            await release.wait()
        return [OutputFile(ctx.output_dir / "r.json", "application/json", b"{}")]

    store = SQLiteStore(tmp_path / "db.sqlite")
    writer = FillingWriter(store.path, PRAGMAS, store.driver._foreign_commit)
    store.driver.writer = writer
    await store.open()
    catalogue = Catalogue({"wait": ModelSpec(id="wait", inputs={"echo": EchoInput}, provider="wait")})
    files = LocalFileStore(tmp_path / "files", "http://test", UrlSigner(b"secret"))
    pool = WorkerPool(
        store, store.hub, catalogue, {"wait": OneFunction(first_run_waits)}, files, slots=2, lease_ms=600
    )
    await pool.start()
    try:
        task = await store.insert_task(echo_task("wait"))
        async with asyncio.timeout(5):
            await started.wait()
        writer.full.set()
        release.set()

        def told() -> list[logging.LogRecord]:
            return [r for r in caplog.records if task.id in r.getMessage() and FULL in r.getMessage()]

        async with asyncio.timeout(5):
            while not told():
                await asyncio.sleep(0.01)
        writer.full.clear()
        # Its lease lapses, the reaper queues it again, and it runs to the end.
        async with asyncio.timeout(10):
            while (done := await store.get_task(task.id)) is None or not done.state.is_terminal():
                await asyncio.sleep(0.01)
        assert done.state is TaskState.SUCCESS
        assert runs == 2
        gc.collect()  # an unretrieved task exception is reported when its task is collected
        await asyncio.sleep(0)
    finally:
        writer.full.clear()
        await pool.stop(grace_s=0.1)
        await store.close()
    assert "never retrieved" not in caplog.text
    assert len(told()) == 1, [r.getMessage() for r in told()]
    assert told()[0].levelno >= logging.WARNING
    assert "Traceback" not in caplog.text, "an expected failure is one line, without a traceback"
