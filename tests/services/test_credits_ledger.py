"""Credits at the store: charged with the insert, refunded once with a failed end, on a ledger.

Every test runs against both backends (a SQLite file, a PostgreSQL server the tests start):
the charge, the caps and the refund are SQL in the transactions that insert and end a task.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from gengate.domain.clock import now_ms
from gengate.domain.endings import Failed, Succeeded
from gengate.domain.errors import BadRequest, TooManyRequests, Unavailable, UsedUp
from gengate.domain.ids import new_task_id
from gengate.domain.keys import KeyChanges
from gengate.domain.ledger import LedgerEntry, LedgerKind
from gengate.domain.states import TaskState
from gengate.domain.task import ResultFile, Task
from gengate.services.keys import KeyService
from gengate.store.base import Admission, Idempotency, Store, TaskQuery
from gengate.store.sqlite import SQLiteStore

MODEL = "m"
LEASE = 60_000


async def new_key(store: Store, credits: int | None) -> str:
    key, _secret = await KeyService(store, None).create("k", credits=credits)
    return key.id


def make_task(key_id: str, charge: int) -> Task:
    return Task(
        id=new_task_id(),
        key_id=key_id,
        model=MODEL,
        mode="echo",
        state=TaskState.PENDING,
        input_json='{"mode":"echo"}',
        request_json="{}",
        create_time=now_ms(),
        charge=charge,
    )


async def balance(store: Store, key_id: str) -> int | None:
    key = await store.get_key(key_id)
    assert key is not None
    return key.credits


async def ledger(store: Store, key_id: str) -> list[LedgerEntry]:
    """Oldest first."""
    return list(reversed(await store.list_ledger(key_id, None, 1000)))


def kinds(entries: list[LedgerEntry]) -> list[tuple[str, int, int | None]]:
    return [(e.kind.value, e.amount, e.balance) for e in entries]


async def claim_one(store: Store, owner: str = "w1", lease_ms: int = LEASE) -> int:
    claims = await store.claim({MODEL: 1}, owner, 1, lease_ms)
    assert len(claims) == 1
    return claims[0].attempt


# -- charging ---------------------------------------------------------------------------------
async def test_charge_is_taken_with_the_insert_and_written_to_the_ledger(store: Store) -> None:
    key_id = await new_key(store, 10)
    task = await store.insert_task(make_task(key_id, 3))
    assert task.charge == 3
    stored = await store.get_task(task.id)
    assert stored is not None
    assert stored.charge == 3
    assert await balance(store, key_id) == 7
    entries = await ledger(store, key_id)
    assert kinds(entries) == [("topup", 10, 10), ("charge", -3, 7)]
    assert entries[1].task_id == task.id
    assert entries[0].task_id is None


async def test_not_enough_credits_is_used_up_and_nothing_is_stored(store: Store) -> None:
    key_id = await new_key(store, 2)
    task = make_task(key_id, 3)
    with pytest.raises(UsedUp):
        await store.insert_task(task, Idempotency("idem-1", "h"))
    assert await store.get_task(task.id) is None
    assert await balance(store, key_id) == 2
    assert kinds(await ledger(store, key_id)) == [("topup", 2, 2)]
    # The refused submit left no idempotency row behind: the same key works once paid for.
    await store.add_credits(key_id, 1)
    assert (await store.insert_task(task, Idempotency("idem-1", "h"))).id == task.id


async def test_an_unlimited_key_is_charged_on_the_ledger_only(store: Store) -> None:
    key_id = await new_key(store, None)
    await store.insert_task(make_task(key_id, 4))
    assert await balance(store, key_id) is None
    assert kinds(await ledger(store, key_id)) == [("charge", -4, None)]


async def test_a_free_task_writes_no_ledger_row(store: Store) -> None:
    key_id = await new_key(store, 0)
    await store.insert_task(make_task(key_id, 0))
    assert kinds(await ledger(store, key_id)) == [("topup", 0, 0)]


async def test_concurrent_inserts_never_overdraw(store: Store) -> None:
    key_id = await new_key(store, 10)
    results = await asyncio.gather(
        *(store.insert_task(make_task(key_id, 1)) for _ in range(100)), return_exceptions=True
    )
    accepted = [r for r in results if isinstance(r, Task)]
    refused = [r for r in results if isinstance(r, UsedUp)]
    assert len(accepted) == 10
    assert len(refused) == 90
    assert await balance(store, key_id) == 0
    entries = await ledger(store, key_id)
    assert sum(e.amount for e in entries) == 0
    assert sorted(e.task_id for e in entries if e.kind is LedgerKind.CHARGE) == sorted(t.id for t in accepted)


async def test_an_idempotent_replay_is_not_charged_again(store: Store) -> None:
    key_id = await new_key(store, 10)
    first = await store.insert_task(make_task(key_id, 2), Idempotency("same", "hash"))
    again = await store.insert_task(make_task(key_id, 2), Idempotency("same", "hash"))
    assert again.id == first.id
    assert await balance(store, key_id) == 8


# -- refunds ----------------------------------------------------------------------------------
async def test_a_failure_is_refunded_once(store: Store) -> None:
    key_id = await new_key(store, 5)
    task = await store.insert_task(make_task(key_id, 2))
    attempt = await claim_one(store)
    failed = await store.finish(task.id, "w1", attempt, Failed("PROVIDER_ERROR", "boom"))
    assert failed is not None
    assert failed.state is TaskState.FAILED
    # A second completion (a duplicate report) is refused and refunds nothing more.
    assert await store.finish(task.id, "w1", attempt, Failed("PROVIDER_ERROR", "again")) is None
    assert await balance(store, key_id) == 5
    assert kinds(await ledger(store, key_id)) == [("topup", 5, 5), ("charge", -2, 3), ("refund", 2, 5)]


async def test_a_success_is_never_refunded(store: Store) -> None:
    key_id = await new_key(store, 5)
    task = await store.insert_task(make_task(key_id, 2))
    attempt = await claim_one(store)
    result = Succeeded((ResultFile("r.json", "application/json", 2),))
    done = await store.finish(task.id, "w1", attempt, result)
    assert done is not None
    assert done.state is TaskState.SUCCESS
    assert await store.cancel(task.id) is not None  # too late: nothing changes
    assert await balance(store, key_id) == 3
    assert [e.kind for e in await ledger(store, key_id)] == [LedgerKind.TOPUP, LedgerKind.CHARGE]


async def test_a_canceled_pending_task_is_refunded_once(store: Store) -> None:
    key_id = await new_key(store, 5)
    task = await store.insert_task(make_task(key_id, 2))
    canceled = await store.cancel(task.id)
    assert canceled is not None
    assert canceled.fail_code == "CANCELED"
    await store.cancel(task.id)
    assert await balance(store, key_id) == 5
    assert [e.kind for e in await ledger(store, key_id)].count(LedgerKind.REFUND) == 1


async def test_a_canceled_running_task_is_refunded_when_its_worker_stops(store: Store) -> None:
    key_id = await new_key(store, 5)
    task = await store.insert_task(make_task(key_id, 2))
    attempt = await claim_one(store)
    await store.cancel(task.id)
    assert await balance(store, key_id) == 3  # still running: nothing to give back yet
    await store.finish(task.id, "w1", attempt, Failed("CANCELED", "Task canceled by the client."))
    assert await balance(store, key_id) == 5


async def test_a_task_retried_after_a_worker_crash_is_charged_once_and_refunded_once(store: Store) -> None:
    key_id = await new_key(store, 5)
    task = await store.insert_task(make_task(key_id, 2))
    later = now_ms() + 10 * LEASE
    await claim_one(store, "crashed-1", lease_ms=1)
    assert [r.requeued for r in await store.reap_expired(later, {MODEL: 2})] == [True]
    second = await claim_one(store, "crashed-2", lease_ms=1)
    assert second == 2
    reaped = await store.reap_expired(later, {MODEL: 2})
    assert [r.requeued for r in reaped] == [False]
    lost = await store.get_task(task.id)
    assert lost is not None
    assert lost.fail_code == "WORKER_LOST"
    # The first worker comes back late: its completion is refused, and refunds nothing.
    assert await store.finish(task.id, "crashed-1", 1, Failed("PROVIDER_ERROR", "late")) is None
    await store.reap_expired(later, {MODEL: 2})
    assert await balance(store, key_id) == 5
    assert kinds(await ledger(store, key_id)) == [("topup", 5, 5), ("charge", -2, 3), ("refund", 2, 5)]


async def test_a_retried_task_that_then_succeeds_keeps_its_one_charge(store: Store) -> None:
    key_id = await new_key(store, 5)
    task = await store.insert_task(make_task(key_id, 2))
    await claim_one(store, "crashed", lease_ms=1)
    await store.reap_expired(now_ms() + 10 * LEASE, {MODEL: 3})
    attempt = await claim_one(store, "w2")
    await store.finish(task.id, "w2", attempt, Succeeded(()))
    assert await balance(store, key_id) == 3
    assert [e.kind for e in await ledger(store, key_id)] == [LedgerKind.TOPUP, LedgerKind.CHARGE]


# -- caps -------------------------------------------------------------------------------------
async def test_a_full_queue_refuses_without_charging(store: Store) -> None:
    key_id = await new_key(store, 10)
    for _ in range(2):
        await store.insert_task(make_task(key_id, 1), admission=Admission(max_queue=2))
    with pytest.raises(Unavailable) as refused:
        await store.insert_task(make_task(key_id, 1), admission=Admission(max_queue=2))
    assert (refused.value.retry_after_s or 0) >= 1
    assert await balance(store, key_id) == 8
    # Another model's queue is its own.
    other = msgspec.structs.replace(make_task(key_id, 1), model="other")
    await store.insert_task(other, admission=Admission(max_queue=2))


async def test_max_concurrent_counts_pending_and_processing(store: Store) -> None:
    key_id = await new_key(store, None)
    first = await store.insert_task(make_task(key_id, 1), admission=Admission(max_concurrent=2))
    await store.insert_task(make_task(key_id, 1), admission=Admission(max_concurrent=2))
    await claim_one(store)  # one processing, one pending: still two unfinished
    with pytest.raises(TooManyRequests) as refused:
        await store.insert_task(make_task(key_id, 1), admission=Admission(max_concurrent=2))
    assert refused.value.retry_after_s
    assert len([e for e in await ledger(store, key_id) if e.kind is LedgerKind.CHARGE]) == 2
    await store.cancel(first.id)  # (the processing one: asks its worker to stop)
    pending = [t for t in await store.list_tasks(key_id, TaskQuery()) if t.state is TaskState.PENDING]
    await store.cancel(pending[0].id)
    await store.insert_task(make_task(key_id, 1), admission=Admission(max_concurrent=2))


# -- top-ups ----------------------------------------------------------------------------------
async def test_top_ups_and_set_balances_are_on_the_ledger(store: Store) -> None:
    key_id = await new_key(store, 5)
    key = await store.add_credits(key_id, 7)
    assert key is not None
    assert key.credits == 12
    await store.add_credits(key_id, -2)
    with pytest.raises(BadRequest):
        await store.add_credits(key_id, -11)  # below zero
    assert await store.add_credits("key_missing", 1) is None
    await store.update_key(key_id, KeyChanges(credits=3))
    await store.update_key(key_id, KeyChanges(credits=None))
    with pytest.raises(BadRequest):
        await store.add_credits(key_id, 1)  # unlimited
    await store.update_key(key_id, KeyChanges(credits=4))
    assert kinds(await ledger(store, key_id)) == [
        ("topup", 5, 5),
        ("topup", 7, 12),
        ("topup", -2, 10),
        ("topup", -7, 3),
        ("topup", 0, None),
        ("topup", 4, 4),
    ]


async def test_ledger_pages_newest_first(store: Store) -> None:
    key_id = await new_key(store, 100)
    for _ in range(5):
        await store.insert_task(make_task(key_id, 1))
    first = await store.list_ledger(key_id, None, 4)
    rest = await store.list_ledger(key_id, first[-1].id, 4)
    assert [e.balance for e in first + rest] == [95, 96, 97, 98, 99, 100]
    assert await store.list_ledger("key_other", None, 4) == []


async def test_sqlite_keeps_its_queue_depths_exact(tmp_path: Path) -> None:
    """SQLite counts pending tasks per model with triggers: the count follows every state
    change (insert, claim, cancel, requeue, release, retry) exactly."""
    store = SQLiteStore(tmp_path / "db.sqlite")
    await store.open()
    try:
        key_id = await new_key(store, None)

        def counted() -> tuple[int, int]:
            kept = (
                store.driver._reader()
                .execute("SELECT pending FROM queue_depths WHERE model = ?", (MODEL,))
                .fetchone()
            )
            real = (
                store.driver._reader()
                .execute("SELECT count(*) FROM tasks WHERE state = 'pending' AND model = ?", (MODEL,))
                .fetchone()
            )
            return (kept[0] if kept else 0), real[0]

        tasks = [await store.insert_task(make_task(key_id, 1)) for _ in range(5)]
        assert counted() == (5, 5)
        await store.cancel(tasks[4].id)
        claims = await store.claim({MODEL: 3}, "w1", 3, 1)
        assert counted() == (1, 1)
        await store.reap_expired(now_ms() + LEASE, {MODEL: 3})  # all three back to the queue
        assert counted() == (4, 4)
        claims = await store.claim({MODEL: 2}, "w2", 2, LEASE)
        await store.release(claims[0].task.id, "w2", claims[0].attempt)
        await store.retry_later(claims[1].task.id, "w2", claims[1].attempt, now_ms() + 60_000)
        assert counted() == (4, 4)
        claims = await store.claim({MODEL: 4}, "w3", 4, LEASE)
        for claim in claims:
            await store.finish(claim.task.id, "w3", claim.attempt, Succeeded(()))
        assert counted() == (1, 1)  # the one waiting out its retry backoff
    finally:
        await store.close()
