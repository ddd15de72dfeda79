"""The console's part of both stores, against real databases: sessions (shared by every API
process, since they live in the store) and the aggregates of the usage, models and health pages."""

from __future__ import annotations

import msgspec

from gengate.domain.clock import now_ms
from gengate.domain.endings import Failed, Succeeded
from gengate.domain.ids import new_task_id
from gengate.domain.keys import ApiKey
from gengate.domain.states import TaskState
from gengate.domain.task import Task
from gengate.store.console_base import ConsoleSession, DailyUsage
from gengate.store.postgres import PostgresStore
from gengate.store.sqlite import SQLiteStore

LEASE = 60_000
DAY = 86_400_000
AnyStore = SQLiteStore | PostgresStore


def task(model: str, key_id: str = "key_1", *, charge: int = 0, create_time: int | None = None) -> Task:
    return Task(
        id=new_task_id(),
        key_id=key_id,
        model=model,
        mode="echo",
        state=TaskState.PENDING,
        input_json="{}",
        request_json="{}",
        create_time=create_time if create_time is not None else now_ms(),
        charge=charge,
    )


async def test_a_session_is_found_until_it_expires_or_is_deleted(store: AnyStore) -> None:
    now = now_ms()
    live = ConsoleSession(id_hash="h1", key_id="key_1", csrf="c1", created_at=now, expires_at=now + 60_000)
    await store.insert_session(live)
    assert await store.get_session("h1", now) == live
    assert await store.get_session("h1", now + 60_000) is None  # expired
    assert await store.get_session("h2", now) is None
    await store.delete_session("h1")
    assert await store.get_session("h1", now) is None


async def test_new_sessions_sweep_expired_ones(store: AnyStore) -> None:
    now = now_ms()
    old = ConsoleSession(id_hash="old", key_id="k", csrf="c", created_at=now - 10, expires_at=now - 1)
    await store.insert_session(old)
    new = msgspec.structs.replace(old, id_hash="new", expires_at=now + 60_000)
    await store.insert_session(new)
    assert await store.get_session("old", now - 5) is None  # swept, though this clock says live
    assert await store.get_session("new", now) == new


async def test_usage_by_day_counts_tasks_and_spend_refunds_excluded(store: AnyStore) -> None:
    for key_id in ("key_1", "key_2"):  # unlimited keys: charged on the ledger only
        await store.insert_key(ApiKey(id=key_id, name=key_id, key_hash=key_id, prefix="p", created_at=0))
    today = now_ms() // DAY
    yesterday_time = (today - 1) * DAY + 1000
    kept, refunded = task("a", charge=3), task("a", charge=5)
    for t in (kept, refunded, task("b", charge=2, create_time=yesterday_time), task("a", "key_2", charge=7)):
        await store.insert_task(t)
    claims = await store.claim({"a": 10}, "w1", 10, LEASE)
    mine = {c.task.id: c for c in claims}
    await store.finish(refunded.id, "w1", mine[refunded.id].attempt, Failed("X", "no"))
    usage = await store.usage_by_day("key_1", (today - 7) * DAY)
    assert usage == [DailyUsage(today - 1, "b", 1, 2), DailyUsage(today, "a", 2, 3)]
    assert await store.usage_by_day("key_1", today * DAY) == [DailyUsage(today, "a", 2, 3)]


async def test_model_loads_worker_leases_and_delivery_health(store: AnyStore) -> None:
    since = now_ms() - 1
    for model in ("a", "a", "a", "b"):
        await store.insert_task(task(model))
    claims = await store.claim({"a": 2}, "w1", 10, LEASE)
    assert len(claims) == 2
    await store.finish(claims[0].task.id, "w1", claims[0].attempt, Succeeded(()))
    loads = {load.model: load for load in await store.model_loads(since)}
    assert (loads["a"].pending, loads["a"].processing, len(loads["a"].run_times)) == (1, 1, 1)
    assert (loads["b"].pending, loads["b"].processing, loads["b"].run_times) == (1, 0, ())
    assert await store.model_loads(now_ms() + DAY) != []  # counts now, no run times from the future
    assert all(load.run_times == () for load in await store.model_loads(now_ms() + DAY))
    (worker,) = await store.worker_leases()
    assert (worker.owner, worker.running) == ("w1", 1)
    assert worker.lease_expires is not None
    assert worker.lease_expires > now_ms()
    health = await store.delivery_health(since)
    assert (health.retrying, health.failed) == (0, 0)
