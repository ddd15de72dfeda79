"""Both stores against real databases (a SQLite file, a PostgreSQL server the tests start):
queueing, fencing, reaping, idempotency, caps, wake-ups, durability. Every test that takes the
`store` fixture runs once per backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from gengate.domain.clock import now_ms
from gengate.domain.endings import Failed, Succeeded
from gengate.domain.errors import Conflict, UsedUp
from gengate.domain.ids import new_task_id
from gengate.domain.keys import ApiKey, KeyChanges
from gengate.domain.states import TaskState
from gengate.domain.task import ResultFile, Task
from gengate.store.base import ExpiredResult, Idempotency, Lease, TaskQuery
from gengate.store.postgres import PostgresStore
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


AnyStore = SQLiteStore | PostgresStore


@pytest.fixture
async def pg_pair(pg_url: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two stores on one database: two processes of a cluster, as far as the store can tell."""
    first, second = PostgresStore(pg_url), PostgresStore(pg_url)
    await first.open()
    await second.open()
    yield first, second
    await second.close()
    await first.close()


async def test_insert_then_read_round_trips(store: AnyStore) -> None:
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


async def test_claim_takes_priority_then_age_and_only_wanted_models(store: AnyStore) -> None:
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


async def test_claim_respects_each_models_capacity(store: AnyStore) -> None:
    for model in ("a", "a", "a", "b", "b", "c"):
        await store.insert_task(make_task(model))
    claims = await store.claim({"a": 2, "b": 5, "c": 0}, "w1", 10, LEASE)
    assert sorted(c.task.model for c in claims) == ["a", "a", "b", "b"]
    assert len(await store.claim({"a": 9, "b": 9, "c": 9}, "w1", 1, LEASE)) == 1


async def test_concurrent_claims_never_share_a_task(store: AnyStore) -> None:
    tasks = [make_task() for _ in range(100)]
    await asyncio.gather(*(store.insert_task(t) for t in tasks))
    batches = await asyncio.gather(*(store.claim({"m": 100}, f"w{i}", 7, LEASE) for i in range(20)))
    claimed = [c.task.id for batch in batches for c in batch]
    assert len(claimed) == len(set(claimed)) == 100


async def test_finish_records_one_completion_and_refuses_stale_claims(store: AnyStore) -> None:
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


async def test_a_finish_given_the_claimed_task_returns_the_row_as_stored(store: AnyStore) -> None:
    """The worker passes the task as claimed; what the run changed meanwhile (progress, the
    upstream reference) and what the finish wrote still come back as the row holds them."""
    task = msgspec.structs.replace(make_task(), callback_url="http://127.0.0.1:9/hook")
    await store.insert_task(task)
    (claim,) = await store.claim({"m": 100}, "w1", 1, LEASE)
    assert await store.set_progress(task.id, "w1", 1, 40)
    assert await store.set_upstream(task.id, "w1", 1, '{"taskId":"up_1"}')
    files = (ResultFile("0.png", "image/png", 10),)
    outcome = Succeeded(files, '{"seed":7}')
    assert await store.finish(task.id, "w2", 1, outcome, claimed=claim.task) is None  # not the owner
    done = await store.finish(task.id, "w1", claim.attempt, outcome, claimed=claim.task)
    assert done is not None
    assert done == await store.get_task(task.id)
    assert (done.state, done.files, done.output_json, done.progress) == (
        TaskState.SUCCESS,
        files,
        '{"seed":7}',
        100,
    )
    assert done.upstream == '{"taskId":"up_1"}'
    assert done.cost_time == done.complete_time - claim.task.start_time  # type: ignore[operator]


async def test_progress_and_heartbeat_are_fenced(store: AnyStore) -> None:
    task = make_task()
    await store.insert_task(task)
    await store.claim({"m": 100}, "w1", 1, LEASE)
    assert await store.set_progress(task.id, "w1", 1, 40)
    assert not await store.set_progress(task.id, "w2", 1, 90)
    assert (await store.get_task(task.id)).progress == 40  # type: ignore[union-attr]
    assert await store.heartbeat(task.id, "w1", 1, LEASE) is Lease.HELD
    assert await store.heartbeat(task.id, "w1", 2, LEASE) is Lease.LOST


async def test_expired_lease_is_requeued_then_fails_worker_lost(store: AnyStore) -> None:
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


async def test_release_hands_the_task_back(store: AnyStore) -> None:
    task = make_task()
    await store.insert_task(task)
    (claim,) = await store.claim({"m": 100}, "w1", 1, LEASE)
    assert not await store.release(task.id, "w2", claim.attempt)
    assert await store.release(task.id, "w1", claim.attempt)
    assert (await store.get_task(task.id)).state is TaskState.PENDING  # type: ignore[union-attr]
    assert await store.queue_depth("m") == 1


async def test_changes_wake_watchers(store: AnyStore) -> None:
    task = make_task()
    await store.insert_task(task)
    waiter = store.hub.watch(task.id)
    await store.claim({"m": 100}, "w1", 1, LEASE)
    await asyncio.wait_for(waiter, 1)


async def test_expired_results(store: AnyStore) -> None:
    task, other = make_task(), make_task()
    await store.insert_task(task)
    await store.insert_task(other)
    await store.claim({"m": 100}, "w1", 2, LEASE)
    files = (ResultFile("0.png", "image/png", 3), ResultFile("result.json", "application/json", 2))
    await store.finish(task.id, "w1", 1, Succeeded(files))
    await store.finish(other.id, "w1", 1, Succeeded(()))
    assert await store.expired_results(now_ms() - 60_000, 10) == []
    expired = await store.expired_results(now_ms() + 1, 10)
    assert sorted(expired, key=lambda e: e.names) == [
        ExpiredResult(other.id, ()),
        ExpiredResult(task.id, ("0.png", "result.json")),
    ]
    await store.mark_files_removed([task.id, other.id])
    assert await store.expired_results(now_ms() + 1, 10) == []


async def test_keys(store: AnyStore) -> None:
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


async def test_idempotency_key_returns_the_first_task_even_under_concurrency(store: AnyStore) -> None:
    first = make_task()
    again = [make_task() for _ in range(10)]
    same = Idempotency("k1", "hash-a")
    results = await asyncio.gather(*(store.insert_task(t, same) for t in [first, *again]))
    assert len({task.id for task in results}) == 1
    assert len(await store.list_tasks("key_1", TaskQuery(limit=100))) == 1
    with pytest.raises(Conflict):
        await store.insert_task(make_task(), Idempotency("k1", "hash-b"))


async def test_retry_later_is_not_claimed_before_its_time(store: AnyStore) -> None:
    task = make_task()
    await store.insert_task(task)
    (claim,) = await store.claim({"m": 10}, "w1", 1, LEASE)
    assert not await store.retry_later(task.id, "w2", claim.attempt, now_ms() + 60_000)  # fenced
    assert await store.retry_later(task.id, "w1", claim.attempt, now_ms() + 300)
    assert await store.claim({"m": 10}, "w1", 1, LEASE) == []
    await asyncio.sleep(0.35)
    (again,) = await store.claim({"m": 10}, "w1", 1, LEASE)
    assert again.attempt == 2


async def test_caps_bound_running_tasks_of_a_model(store: AnyStore) -> None:
    for _ in range(5):
        await store.insert_task(make_task())
    first = await store.claim({"m": 10}, "w1", 10, LEASE, {"m": 2})
    assert len(first) == 2
    assert await store.claim({"m": 10}, "w2", 10, LEASE, {"m": 2}) == []
    await store.finish(first[0].task.id, "w1", 1, Succeeded(()))
    assert len(await store.claim({"m": 10}, "w2", 10, LEASE, {"m": 2})) == 1


async def test_cancel_ends_pending_at_once_and_flags_running(store: AnyStore) -> None:
    pending, running = make_task(), make_task()
    await store.insert_task(running)
    await store.claim({"m": 10}, "w1", 1, LEASE)
    await store.insert_task(pending)
    canceled = await store.cancel(pending.id)
    assert canceled is not None
    assert canceled.state is TaskState.FAILED
    assert canceled.fail_code == "CANCELED"
    flagged = await store.cancel(running.id)
    assert flagged is not None
    assert flagged.state is TaskState.PROCESSING
    assert await store.heartbeat(running.id, "w1", 1, LEASE) is Lease.CANCEL_REQUESTED
    assert await store.cancel("task_missing") is None


async def test_upstream_reference_is_kept(store: AnyStore) -> None:
    task = make_task()
    await store.insert_task(task)
    await store.claim({"m": 10}, "w1", 1, LEASE)
    assert await store.set_upstream(task.id, "w1", 1, '{"taskId":"up_1"}')
    assert not await store.set_upstream(task.id, "w9", 1, "{}")
    assert (await store.get_task(task.id)).upstream == '{"taskId":"up_1"}'  # type: ignore[union-attr]


async def test_list_tasks_pages_newest_first(store: AnyStore) -> None:
    tasks = [make_task(create_time=t) for t in range(1, 8)]
    for task in tasks:
        await store.insert_task(task)
    page = await store.list_tasks("key_1", TaskQuery(limit=3))
    assert [t.create_time for t in page] == [7, 6, 5]
    after = await store.list_tasks("key_1", TaskQuery(limit=3, before=(page[-1].create_time, page[-1].id)))
    assert [t.create_time for t in after] == [4, 3, 2]
    assert [t.create_time for t in await store.list_tasks("key_1", TaskQuery(since=6, until=7))] == [6]


async def test_pg_two_processes_never_share_a_task(pg_pair: tuple[PostgresStore, PostgresStore]) -> None:
    first, second = pg_pair
    tasks = [make_task() for _ in range(200)]
    await asyncio.gather(*(first.insert_task(t) for t in tasks))
    batches = await asyncio.gather(
        *(store.claim({"m": 100}, f"w{i}", 9, LEASE) for i in range(12) for store in (first, second))
    )
    claimed = [c.task.id for batch in batches for c in batch]
    assert len(claimed) == len(set(claimed))
    assert len(claimed) == 200


async def test_pg_caps_hold_across_processes(pg_pair: tuple[PostgresStore, PostgresStore]) -> None:
    first, second = pg_pair
    for _ in range(20):
        await first.insert_task(make_task())
    batches = await asyncio.gather(
        *(store.claim({"m": 10}, f"w{i}", 10, LEASE, {"m": 3}) for i in range(8) for store in (first, second))
    )
    assert sum(len(batch) for batch in batches) == 3


async def test_pg_changes_reach_the_other_process(pg_pair: tuple[PostgresStore, PostgresStore]) -> None:
    first, second = pg_pair
    task = make_task()
    waiter = second.hub.watch(task.id)
    await first.insert_task(task)
    (claim,) = await first.claim({"m": 10}, "w1", 1, LEASE)
    await asyncio.wait_for(waiter, 5)
    canceled: list[str] = []
    second.hub.on_cancel(canceled.append)
    await first.cancel(task.id)
    async with asyncio.timeout(5):
        while not canceled:
            await asyncio.sleep(0.01)
    assert canceled == [task.id]
    await first.finish(task.id, "w1", claim.attempt, Failed("CANCELED", "x"))


async def test_credits_are_charged_once_and_a_failure_refunded_once(store: AnyStore) -> None:
    key = ApiKey(id="key_c", name="c", key_hash="c" * 64, prefix="gg_c", created_at=1, credits=3)
    await store.insert_key(key)
    paid = [msgspec.structs.replace(make_task(), key_id="key_c", charge=1) for _ in range(5)]
    results = await asyncio.gather(*(store.insert_task(t) for t in paid), return_exceptions=True)
    assert sum(not isinstance(r, BaseException) for r in results) == 3
    assert all(isinstance(r, UsedUp) for r in results if isinstance(r, BaseException))
    assert (await store.get_key("key_c")).credits == 0  # type: ignore[union-attr]
    (claim,) = await store.claim({"m": 10}, "w1", 1, lease_ms=1)
    await asyncio.sleep(0.01)
    await store.reap_expired(now_ms(), {"m": 1})  # the worker died: WORKER_LOST, refunded
    assert await store.finish(claim.task.id, "w1", claim.attempt, Failed("X", "late")) is None
    assert (await store.get_key("key_c")).credits == 1  # type: ignore[union-attr]
    ledger = await store.list_ledger("key_c", None, 50)
    assert sorted(entry.kind.value for entry in ledger) == ["charge"] * 3 + ["refund", "topup"]
    assert sum(entry.amount for entry in ledger) == 1


async def test_queue_positions_of_one_millisecond_follow_the_order_made(store: AnyStore) -> None:
    """Tasks made in the same millisecond: their ids sort in the order the process made them,
    and the queue position breaks the tie by id (before, both counted the same tasks ahead)."""
    made = [make_task(create_time=1_000) for _ in range(3)]
    for task in reversed(made):  # inserted in the other order: the id decides, not the insert
        await store.insert_task(task)
    assert [await store.queue_position(task) for task in made] == [0, 1, 2]
