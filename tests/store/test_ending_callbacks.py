"""Every ending owes its task's callback, on both backends: a run that failed and a pending task
cancelled too, not only a success. On PostgreSQL both endings used to fail outright: the outbox
row's `:now + :first_delay` was two untyped parameters added (`operator is not unique`)."""

from __future__ import annotations

import msgspec
from test_callback_handover import FAILED
from test_delivery_batches import HOOK, AnyStore
from test_stores import LEASE, make_task

from gengate.domain.deliveries import DeliveryState


async def test_a_failed_run_owes_its_callback(store: AnyStore) -> None:
    task = msgspec.structs.replace(make_task(), callback_url=HOOK)
    await store.insert_task(task)
    [claim] = await store.claim({"m": 1}, "w1", 1, LEASE)
    ended = await store.finish(claim.task.id, "w1", claim.attempt, FAILED)
    assert ended is not None
    assert ended.state.value == "failed"
    [delivery] = await store.deliveries_of_task(task.id)
    assert (delivery.url, delivery.state) == (HOOK, DeliveryState.PENDING)


async def test_a_pending_task_cancelled_owes_its_callback(store: AnyStore) -> None:
    task = msgspec.structs.replace(make_task(), callback_url=HOOK)
    await store.insert_task(task)
    ended = await store.cancel(task.id)
    assert ended is not None
    assert ended.state.value == "failed"
    [delivery] = await store.deliveries_of_task(task.id)
    assert (delivery.url, delivery.state) == (HOOK, DeliveryState.PENDING)
