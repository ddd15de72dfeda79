"""A run's log lines and plain output values, on both backends: kept only for the current claim,
read back in order, and the output written with the success (PostgreSQL's batched path too)."""

from __future__ import annotations

import asyncio

import pytest
from test_stores import LEASE, make_task

from gengate.domain.endings import Succeeded
from gengate.domain.task import ResultFile, TaskLog
from gengate.store.postgres import PostgresStore
from gengate.store.sqlite import SQLiteStore

AnyStore = SQLiteStore | PostgresStore


async def test_log_lines_are_kept_in_order_for_the_current_claim_only(store: AnyStore) -> None:
    task = make_task()
    await store.insert_task(task)
    assert not await store.append_logs(task.id, "w1", 1, [TaskLog(1, "before any claim")])
    await store.claim({"m": 10}, "w1", 1, LEASE)
    assert await store.append_logs(task.id, "w1", 1, [TaskLog(5, "step 1"), TaskLog(6, 'quote " and \\ é')])
    assert await store.append_logs(task.id, "w1", 1, [TaskLog(7, "")])
    assert not await store.append_logs(task.id, "w2", 1, [TaskLog(8, "another worker")])
    assert not await store.append_logs(task.id, "w1", 2, [TaskLog(9, "a stale attempt")])
    assert await store.task_logs(task.id) == [
        TaskLog(5, "step 1", 1),
        TaskLog(6, 'quote " and \\ é', 1),
        TaskLog(7, "", 1),
    ]
    assert await store.task_logs("task_unknown") == []


async def test_output_values_are_written_with_the_success(store: AnyStore) -> None:
    files = (ResultFile("0.png", "image/png", 10),)
    with_output, without = make_task(), make_task()
    for task in (with_output, without):
        await store.insert_task(task)
    await store.claim({"m": 10}, "w1", 2, LEASE)
    # Together, so that PostgreSQL records both in one batched statement.
    done, plain = await asyncio.gather(
        store.finish(with_output.id, "w1", 1, Succeeded(files, '{"score":0.5,"text":"ok"}')),
        store.finish(without.id, "w1", 1, Succeeded(files)),
    )
    assert done is not None
    assert done.output_json == '{"score":0.5,"text":"ok"}'
    assert plain is not None
    assert plain.output_json is None
    assert (await store.get_task(with_output.id)) == done


@pytest.mark.parametrize("lines", [1, 500])
async def test_a_batch_of_lines_is_one_write(store: AnyStore, lines: int) -> None:
    task = make_task()
    await store.insert_task(task)
    await store.claim({"m": 10}, "w1", 1, LEASE)
    batch = [TaskLog(i, f"line {i}") for i in range(lines)]
    assert await store.append_logs(task.id, "w1", 1, batch)
    assert [log.line for log in await store.task_logs(task.id)] == [f"line {i}" for i in range(lines)]
