"""The callback sender's batched store calls, on both backends: the tasks of a claimed batch in
one read, attempts recorded in one transaction (each still fenced by its lease), and deliveries
given back unsent without an attempt counted."""

from __future__ import annotations

import msgspec
from test_stores import LEASE, make_task

from gengate.domain.clock import now_ms
from gengate.domain.deliveries import AttemptResult, Delivery, DeliveryAttempt, DeliveryState
from gengate.domain.endings import Succeeded
from gengate.store.postgres import PostgresStore
from gengate.store.sqlite import SQLiteStore

AnyStore = SQLiteStore | PostgresStore
HOOK = "https://receiver.test/hook"
TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def owed(store: AnyStore, count: int) -> list[str]:
    """`count` finished tasks, each owing its callback; their ids."""
    ids = []
    for i in range(count):
        task = msgspec.structs.replace(make_task(create_time=i + 1), callback_url=HOOK)
        if i == 0:
            task = msgspec.structs.replace(task, trace_context=TRACE)
        await store.insert_task(task)
        ids.append(task.id)
    for claim in await store.claim({"m": count}, "w1", count, LEASE):
        await store.finish(claim.task.id, "w1", claim.attempt, Succeeded(()))
    return ids


def result(
    attempt: int, status: int | None, state: DeliveryState, next_at: int | None = None
) -> AttemptResult:
    error = None if status == 200 else f"HTTP {status}"
    return AttemptResult(DeliveryAttempt(attempt, now_ms(), status, 3, error), state, next_at)


async def test_the_tasks_of_a_batch_come_in_one_read(store: AnyStore) -> None:
    ids = await owed(store, 3)
    found = await store.callback_tasks([*ids, "task_missing"])
    assert sorted(found) == sorted(ids)
    assert all(task.id == task_id and task.callback_url == HOOK for task_id, (task, _) in found.items())
    assert found[ids[0]][1] == TRACE
    assert found[ids[1]][1] is None
    assert await store.callback_tasks([]) == {}


async def test_a_batch_of_attempts_is_recorded_each_fenced_by_its_lease(store: AnyStore) -> None:
    await owed(store, 4)
    claimed = await store.claim_deliveries("sender", 10, LEASE)
    assert len(claimed) == 4
    first, second, third, fourth = claimed
    stale: Delivery = msgspec.structs.replace(fourth, attempts=5)  # not the attempt the row is at
    retry_at = now_ms() + 60_000
    recorded = await store.record_attempts(
        "sender",
        [
            (first, result(1, 200, DeliveryState.DELIVERED)),
            (second, result(1, 503, DeliveryState.PENDING, retry_at)),
            (third, result(1, 410, DeliveryState.FAILED)),
            (stale, result(6, 200, DeliveryState.DELIVERED)),
        ],
    )
    assert recorded == [True, True, True, False]
    # Another sender's lease is not this one's to end.
    assert await store.record_attempts("thief", [(fourth, result(1, 200, DeliveryState.DELIVERED))]) == [
        False
    ]
    assert await store.record_attempts("sender", []) == []

    state = {}
    for delivery in claimed:
        [now] = await store.deliveries_of_task(delivery.task_id)
        state[delivery.id] = (
            now.state,
            now.attempts,
            [a.status_code for a in now.history],
            now.next_attempt_at,
        )
    assert state[first.id][:3] == (DeliveryState.DELIVERED, 1, [200])
    assert state[second.id] == (DeliveryState.PENDING, 1, [503], retry_at)
    assert state[third.id][:3] == (DeliveryState.FAILED, 1, [410])
    assert state[fourth.id][:3] == (DeliveryState.PENDING, 0, [])  # still leased, nothing recorded
    [done] = await store.deliveries_of_task(first.task_id)
    assert done.completed_at is not None


async def test_a_delivery_given_back_is_due_later_with_no_attempt_counted(store: AnyStore) -> None:
    await owed(store, 2)
    claimed = await store.claim_deliveries("sender", 10, LEASE)
    later = now_ms() + 60_000
    assert await store.defer_deliveries("thief", [d.id for d in claimed], later) == 0
    assert await store.defer_deliveries("sender", [claimed[0].id], later) == 1
    assert await store.claim_deliveries("sender", 10, LEASE) == []  # one leased, one not yet due
    [back] = await store.deliveries_of_task(claimed[0].task_id)
    assert (back.state, back.attempts, back.history, back.next_attempt_at) == (
        DeliveryState.PENDING,
        0,
        (),
        later,
    )
    assert await store.next_delivery_due() is not None
