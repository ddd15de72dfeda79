"""The SQLite store against a real database file: queueing, fencing, reaping, durability."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gengate.domain.clock import now_ms
from gengate.domain.ids import new_task_id
from gengate.domain.keys import ApiKey, KeyChanges
from gengate.domain.states import TaskState
from gengate.domain.task import ResultFile, Task
from gengate.store.base import Failed, Lease, Succeeded
from gengate.store.sqlite import SQLiteStore

LEASE = 60_000


def make_task(model: str = "m", *, priority: int = 0, create_time: int | None = None) -> Task:
    return Task(
        id=new_task_id(),
        key_id="key_1",
        model=model,
        mode="echo",
        state=TaskState.PENDING,
        input_json='{"mode":"echo","prompt":"hi"}',
        request_json='{"input":{"prompt":"hi"}}',
        priority=priority,
        create_time=create_time if create_time is not None else now_ms(),
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "db.sqlite")
    await store.open()
    yield store
    await store.close()


async def test_insert_then_read_round_trips(store: SQLiteStore) -> None:
    task = make_task()
    await store.insert_task(task)
    assert await store.get_task(task.id) == task
    assert await store.get_task("task_missing") is None


async def test_insert_is_durable_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    first = SQLiteStore(path)
    await first.open()
    tasks = [make_task() for _ in range(50)]
    await asyncio.gather(*(first.insert_task(t) for t in tasks))
    await first.close()
    second = SQLiteStore(path)
    await second.open()
    try:
        for task in tasks:
            assert await second.get_task(task.id) == task
    finally:
        await second.close()


async def test_claim_takes_priority_then_age_and_only_wanted_models(store: SQLiteStore) -> None:
    old = make_task(create_time=1)
    new = make_task(create_time=2)
    urgent = make_task(priority=5, create_time=3)
    other = make_task("other", create_time=0)
    for task in (new, old, urgent, other):
        await store.insert_task(task)
    claims = await store.claim({"m": 100}, "w1", 10, LEASE)
    assert [c.task.id for c in claims] == [urgent.id, old.id, new.id]
    assert all(c.task.state is TaskState.PROCESSING and c.attempt == 1 for c in claims)
    assert await store.claim({"m": 100}, "w1", 10, LEASE) == []
    assert (await store.get_task(other.id)).state is TaskState.PENDING  # type: ignore[union-attr]


async def test_claim_respects_each_models_capacity(store: SQLiteStore) -> None:
    for model in ("a", "a", "a", "b", "b", "c"):
        await store.insert_task(make_task(model))
    claims = await store.claim({"a": 2, "b": 5, "c": 0}, "w1", 10, LEASE)
    assert sorted(c.task.model for c in claims) == ["a", "a", "b", "b"]
    assert len(await store.claim({"a": 9, "b": 9, "c": 9}, "w1", 1, LEASE)) == 1


async def test_concurrent_claims_never_share_a_task(store: SQLiteStore) -> None:
    tasks = [make_task() for _ in range(100)]
    await asyncio.gather(*(store.insert_task(t) for t in tasks))
    batches = await asyncio.gather(*(store.claim({"m": 100}, f"w{i}", 7, LEASE) for i in range(20)))
    claimed = [c.task.id for batch in batches for c in batch]
    assert len(claimed) == len(set(claimed)) == 100


async def test_finish_records_one_completion_and_refuses_stale_claims(store: SQLiteStore) -> None:
    task = make_task()
    await store.insert_task(task)
    (claim,) = await store.claim({"m": 100}, "w1", 1, LEASE)
    files = (ResultFile("0.png", "image/png", 10),)
    assert await store.finish(task.id, "w2", 1, Succeeded(files)) is None  # not the owner
    assert await store.finish(task.id, "w1", 2, Succeeded(files)) is None  # not the attempt
    done = await store.finish(task.id, "w1", claim.attempt, Succeeded(files))
    assert done is not None
    assert done.state is TaskState.SUCCESS
    assert done.files == files
    assert done.cost_time is not None
    assert done.complete_time is not None
    assert done.progress == 100
    assert await store.finish(task.id, "w1", claim.attempt, Failed("X", "late")) is None
    assert (await store.get_task(task.id)) == done


async def test_progress_and_heartbeat_are_fenced(store: SQLiteStore) -> None:
    task = make_task()
    await store.insert_task(task)
    await store.claim({"m": 100}, "w1", 1, LEASE)
    assert await store.set_progress(task.id, "w1", 1, 40)
    assert not await store.set_progress(task.id, "w2", 1, 90)
    assert (await store.get_task(task.id)).progress == 40  # type: ignore[union-attr]
    assert await store.heartbeat(task.id, "w1", 1, LEASE) is Lease.HELD
    assert await store.heartbeat(task.id, "w1", 2, LEASE) is Lease.LOST


async def test_expired_lease_is_requeued_then_fails_worker_lost(store: SQLiteStore) -> None:
    task = make_task()
    await store.insert_task(task)
    await store.claim({"m": 100}, "w1", 1, lease_ms=1)
    await asyncio.sleep(0.01)
    reaped = await store.reap_expired(now_ms(), {"m": 2})
    assert [(r.task_id, r.requeued) for r in reaped] == [(task.id, True)]
    assert (await store.get_task(task.id)).state is TaskState.PENDING  # type: ignore[union-attr]

    (second,) = await store.claim({"m": 100}, "w2", 1, lease_ms=1)
    assert second.attempt == 2
    await asyncio.sleep(0.01)
    # The first worker wakes up late: its result must not land.
    assert await store.finish(task.id, "w1", 1, Succeeded(())) is None
    reaped = await store.reap_expired(now_ms(), {"m": 2})
    assert [(r.task_id, r.requeued) for r in reaped] == [(task.id, False)]
    lost = await store.get_task(task.id)
    assert lost is not None
    assert lost.state is TaskState.FAILED
    assert lost.fail_code == "WORKER_LOST"
    assert await store.finish(task.id, "w2", 2, Succeeded(())) is None


async def test_release_hands_the_task_back(store: SQLiteStore) -> None:
    task = make_task()
    await store.insert_task(task)
    (claim,) = await store.claim({"m": 100}, "w1", 1, LEASE)
    assert not await store.release(task.id, "w2", claim.attempt)
    assert await store.release(task.id, "w1", claim.attempt)
    assert (await store.get_task(task.id)).state is TaskState.PENDING  # type: ignore[union-attr]
    assert await store.queue_depth("m") == 1


async def test_changes_wake_watchers(store: SQLiteStore) -> None:
    task = make_task()
    await store.insert_task(task)
    waiter = store.hub.watch(task.id)
    await store.claim({"m": 100}, "w1", 1, LEASE)
    await asyncio.wait_for(waiter, 1)


async def test_expired_results(store: SQLiteStore) -> None:
    task = make_task()
    await store.insert_task(task)
    await store.claim({"m": 100}, "w1", 1, LEASE)
    await store.finish(task.id, "w1", 1, Succeeded(()))
    assert await store.expired_results(now_ms() - 60_000, 10) == []
    assert await store.expired_results(now_ms() + 1, 10) == [task.id]
    await store.mark_files_removed([task.id])
    assert await store.expired_results(now_ms() + 1, 10) == []


async def test_keys(store: SQLiteStore) -> None:
    key = ApiKey(id="key_1", name="a", key_hash="h" * 64, prefix="gg_abc", created_at=1, models=("m",))
    await store.insert_key(key)
    assert await store.get_key_by_hash("h" * 64) == key
    assert await store.get_key("key_1") == key
    updated = await store.update_key("key_1", KeyChanges(disabled=True, models=None))
    assert updated is not None
    assert updated.disabled
    assert updated.models is None
    assert updated.name == "a"
    assert await store.list_keys() == [updated]
    assert await store.update_key("key_missing", KeyChanges(disabled=True)) is None
