"""Callbacks of a running task (Replicate's `start` and `logs` webhook events), on both backends:
owed by the current claim of a task with a callback URL, in the same outbox as the end's."""

from __future__ import annotations

import msgspec
from test_stores import LEASE, make_task

from gengate.domain.clock import now_ms
from gengate.domain.deliveries import AttemptResult, DeliveryAttempt, DeliveryState
from gengate.domain.dialect import Dialect
from gengate.domain.endings import Succeeded
from gengate.domain.task import Task
from gengate.store.postgres import PostgresStore
from gengate.store.sqlite import SQLiteStore

AnyStore = SQLiteStore | PostgresStore
HOOK = "https://receiver.test/hook"


def hooked() -> Task:
    return msgspec.structs.replace(make_task(), callback_url=HOOK, dialect=Dialect.REPLICATE)


async def test_the_current_claim_owes_one_start_callback(store: AnyStore) -> None:
    task = hooked()
    await store.insert_task(task)
    assert not await store.add_start_callback(task.id, "w1", 1)  # not claimed yet
    await store.claim({"m": 10}, "w1", 1, LEASE)
    assert not await store.add_start_callback(task.id, "w2", 1)  # another worker's
    assert not await store.add_start_callback(task.id, "w1", 2)  # a stale attempt
    assert await store.add_start_callback(task.id, "w1", 1)
    assert not await store.add_start_callback(task.id, "w1", 1)  # once per task
    [start] = await store.deliveries_of_task(task.id)
    assert (start.url, start.dialect, start.key_id, start.state) == (
        HOOK,
        "replicate",
        "key_1",
        DeliveryState.PENDING,
    )
    assert await store.next_delivery_due() is not None
    # The end owes its own callback beside it.
    await store.finish(task.id, "w1", 1, Succeeded(()))
    deliveries = await store.deliveries_of_task(task.id)
    assert len(deliveries) == 2
    assert start.id in {d.id for d in deliveries}


async def test_no_start_callback_without_a_callback_url(store: AnyStore) -> None:
    task = make_task()
    await store.insert_task(task)
    await store.claim({"m": 10}, "w1", 1, LEASE)
    assert not await store.add_start_callback(task.id, "w1", 1)
    assert await store.deliveries_of_task(task.id) == []


async def test_logs_callbacks_wait_their_turn_and_one_at_a_time(store: AnyStore) -> None:
    """A `logs` callback is owed when lines are written: none while one is still waiting to go
    out (it shows every line written by then), and none due sooner than `gap_ms` after the
    task's previous one."""
    task = hooked()
    await store.insert_task(task)
    assert not await store.add_logs_callback(task.id, "w1", 1, 500)  # not claimed yet
    await store.claim({"m": 10}, "w1", 1, LEASE)
    assert not await store.add_logs_callback(task.id, "w2", 1, 500)  # another worker's
    assert await store.add_logs_callback(task.id, "w1", 1, 500)
    assert not await store.add_logs_callback(task.id, "w1", 1, 500)  # the first still waits
    [first] = await store.deliveries_of_task(task.id)
    [claimed] = await store.claim_deliveries("sender", 10, LEASE)
    assert claimed.id == first.id
    result = AttemptResult(DeliveryAttempt(1, now_ms(), 204, 3, None), DeliveryState.DELIVERED)
    assert await store.record_attempt(claimed, "sender", result)
    assert await store.add_logs_callback(task.id, "w1", 1, 60_000)
    by_id = {d.id: d for d in await store.deliveries_of_task(task.id)}
    delivered = by_id.pop(first.id)
    [second] = by_id.values()
    assert delivered.completed_at is not None
    assert second.next_attempt_at is not None
    assert second.next_attempt_at >= delivered.completed_at + 60_000


async def test_no_logs_callback_without_a_callback_url(store: AnyStore) -> None:
    task = make_task()
    await store.insert_task(task)
    await store.claim({"m": 10}, "w1", 1, LEASE)
    assert not await store.add_logs_callback(task.id, "w1", 1, 500)


async def test_an_attempt_is_recorded_on_both_backends(store: AnyStore) -> None:
    """The sender records every attempt; PostgreSQL once refused the statement outright (an
    untyped `completed_at` in a CASE read as text), so no callback's attempt was ever kept."""
    task = hooked()
    await store.insert_task(task)
    await store.claim({"m": 10}, "w1", 1, LEASE)
    await store.finish(task.id, "w1", 1, Succeeded(()))
    [claimed] = await store.claim_deliveries("sender", 10, LEASE)
    retry = AttemptResult(DeliveryAttempt(1, now_ms(), 503, 3, "HTTP 503"), DeliveryState.PENDING, now_ms())
    assert await store.record_attempt(claimed, "sender", retry)
    [again] = await store.claim_deliveries("sender", 10, LEASE)
    done = AttemptResult(DeliveryAttempt(2, now_ms(), 204, 3, None), DeliveryState.DELIVERED)
    assert await store.record_attempt(again, "sender", done)
    [delivery] = await store.deliveries_of_task(task.id)
    assert (delivery.state, delivery.attempts, [a.status_code for a in delivery.history]) == (
        DeliveryState.DELIVERED,
        2,
        [503, 204],
    )
    assert delivery.completed_at is not None
