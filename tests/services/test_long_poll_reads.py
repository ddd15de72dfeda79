"""Long-polls of one task share their reads, on real stores: waiters woken by one change make
one read between them, and never take an answer from a read that started before that change
(the rule that keeps sharing safe when the change comes from another process)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, cast

import pytest

from gengate.domain.catalogue import Catalogue
from gengate.domain.clock import now_ms
from gengate.domain.ids import new_task_id
from gengate.domain.states import TaskState
from gengate.domain.task import Task
from gengate.net.guard import AddressPolicy
from gengate.services.tasks import TaskService
from gengate.store.base import Store
from gengate.store.postgres import PostgresStore
from gengate.store.sqlite import SQLiteStore

LEASE = 60_000
WAITERS = 50

AnyStore = SQLiteStore | PostgresStore


class ReadCounter:
    """A real store, with its task reads counted (`reads` begun, `done` returned); after
    `hold()`, the next read reads, then waits to return until the event is set: a read that
    started before a change and ends after it."""

    def __init__(self, inner: AnyStore) -> None:
        self.inner = inner
        self.reads = 0
        self.done = 0
        self._held: asyncio.Event | None = None
        self.holding = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def get_task(self, task_id: str) -> Task | None:
        self.reads += 1
        held, self._held = self._held, None
        task = await self.inner.get_task(task_id)
        if held is not None:
            self.holding.set()
            await held.wait()
        self.done += 1
        return task

    def hold(self) -> asyncio.Event:
        self._held = asyncio.Event()
        return self._held


def make_task() -> Task:
    return Task(
        id=new_task_id(),
        key_id="key_1",
        model="m",
        mode="echo",
        state=TaskState.PENDING,
        input_json='{"mode":"echo"}',
        request_json="{}",
        create_time=now_ms(),
    )


def service(store: ReadCounter) -> TaskService:
    return TaskService(cast(Store, store), store.inner.hub, Catalogue({}), AddressPolicy())


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0)
    for _ in range(5):  # and let whoever got there park
        await asyncio.sleep(0)


def wait_for_change(tasks: TaskService, task: Task) -> Coroutine[Any, Any, Task]:
    return tasks.wait_for_change(task, 30)


def wait_until_done(tasks: TaskService, task: Task) -> Coroutine[Any, Any, Task]:
    return tasks.wait_until_done(task, 30)


@pytest.mark.parametrize("wait", [wait_for_change, wait_until_done])
async def test_waiters_woken_by_one_change_make_one_read(
    store: AnyStore, wait: Callable[[TaskService, Task], Coroutine[Any, Any, Task]]
) -> None:
    counted = ReadCounter(store)
    tasks = service(counted)
    task = make_task()
    await store.insert_task(task)
    waiters = [asyncio.create_task(wait(tasks, task)) for _ in range(WAITERS)]
    await until(lambda: counted.done == WAITERS)  # each looked once, then waits
    await store.cancel(task.id)  # pending -> failed: one change
    answers = await asyncio.wait_for(asyncio.gather(*waiters), 10)
    assert {(answer.state, answer.fail_code) for answer in answers} == {(TaskState.FAILED, "CANCELED")}
    assert counted.reads == WAITERS + 1


async def test_a_read_started_before_a_change_never_answers_its_waiters(store: AnyStore) -> None:
    """A and B wait; C's first look reads the pending task and is held; the task changes;
    A and B must read again (one read for both), not join C's, and answer while C is held."""
    counted = ReadCounter(store)
    tasks = service(counted)
    task = make_task()
    await store.insert_task(task)
    woken = [asyncio.create_task(tasks.wait_for_change(task, 30)) for _ in range(2)]
    await until(lambda: counted.done == 2)
    release = counted.hold()
    late = asyncio.create_task(tasks.wait_for_change(task, 30))
    async with asyncio.timeout(5):
        await counted.holding.wait()  # C has read `pending`, and has not returned yet
    (claim,) = await store.claim({"m": 10}, "w1", 1, LEASE)  # pending -> processing
    first, second = await asyncio.wait_for(asyncio.gather(*woken), 5)
    assert first.state is second.state is TaskState.PROCESSING
    assert counted.reads == 4  # A, B, C, and one for A and B after the change
    assert not late.done()
    release.set()
    # C's read is older than the change: C reads again (the read A and B shared will do).
    assert (await asyncio.wait_for(late, 5)).state is TaskState.PROCESSING
    assert counted.reads == 4
    assert claim.task.id == task.id


async def test_a_change_from_another_process_is_never_answered_by_an_older_read(
    pg_url: str,
) -> None:
    """The same, with the change committed by another process and heard through LISTEN:
    the waiters' read must start after the notification, which comes after the commit."""
    writer, reader = PostgresStore(pg_url), PostgresStore(pg_url)
    await writer.open()
    await reader.open()
    try:
        counted = ReadCounter(reader)
        tasks = service(counted)
        task = make_task()
        await writer.insert_task(task)
        woken = [asyncio.create_task(tasks.wait_for_change(task, 30)) for _ in range(3)]
        await until(lambda: counted.done == 3)
        release = counted.hold()
        late = asyncio.create_task(tasks.wait_for_change(task, 30))
        async with asyncio.timeout(5):
            await counted.holding.wait()
        await writer.claim({"m": 10}, "w1", 1, LEASE)  # in the other process
        answers = await asyncio.wait_for(asyncio.gather(*woken), 5)
        assert {answer.state for answer in answers} == {TaskState.PROCESSING}
        assert counted.reads == 5
        release.set()
        assert (await asyncio.wait_for(late, 5)).state is TaskState.PROCESSING
        assert counted.reads == 5
    finally:
        await reader.close()
        await writer.close()


async def test_a_task_deleted_under_its_waiters_answers_with_what_they_last_saw(tmp_path: Path) -> None:
    """Deleted by another process (the writer notices the foreign commit and wakes everyone)."""
    store = SQLiteStore(tmp_path / "db.sqlite")
    await store.open()
    try:
        counted = ReadCounter(store)
        tasks = service(counted)
        task = make_task()
        await store.insert_task(task)
        waiters = [asyncio.create_task(tasks.wait_for_change(task, 30)) for _ in range(3)]
        done = asyncio.create_task(tasks.wait_until_done(task, 30))
        await until(lambda: counted.done == 4)
        with sqlite3.connect(tmp_path / "db.sqlite") as other:
            other.execute("DELETE FROM tasks WHERE id = ?", (task.id,))
        answers = await asyncio.wait_for(asyncio.gather(*waiters, done), 10)
        assert all(answer == task for answer in answers)
        assert counted.reads == 5
    finally:
        await store.close()
