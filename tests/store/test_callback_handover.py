"""A callback owed by a task ending in this process is handed to this process's sender in the
ending transaction (gengate.store.handover): its outbox row is written leased to that sender, so
no other sender claims it, and once committed it comes with its task. Should that sender never
send it (its process died), the lease runs out and any sender claims it. On both backends."""

from __future__ import annotations

import asyncio

import msgspec
from test_delivery_batches import HOOK, AnyStore, result
from test_stores import LEASE, make_task

from gengate.domain.deliveries import Delivery, DeliveryState
from gengate.domain.endings import Failed
from gengate.domain.task import Task
from gengate.store.handover import CallbackLease

FAILED = Failed("PROVIDER_ERROR", "it broke")


class Intake:
    """A sender as the store sees it: what it leases, what it is handed, what it gets back."""

    def __init__(self, lease: CallbackLease | None) -> None:
        self._lease = lease
        self.leased = 0
        self.unleased = 0
        self.taken: list[tuple[Delivery, Task]] = []

    def lease(self) -> CallbackLease | None:
        self.leased += self._lease is not None
        return self._lease

    def take(self, delivery: Delivery, task: Task) -> None:
        self.taken.append((delivery, task))

    def unlease(self) -> None:
        self.unleased += 1


async def end(store: AnyStore, *, callback: bool) -> str:
    """A task run and failed by worker `w1`; its id."""
    task = make_task()
    if callback:
        task = msgspec.structs.replace(task, callback_url=HOOK)
    await store.insert_task(task)
    [claim] = await store.claim({"m": 1}, "w1", 1, LEASE)
    assert await store.finish(claim.task.id, "w1", claim.attempt, FAILED) is not None
    return task.id


async def test_a_callback_owed_here_is_handed_over_leased_to_this_sender(store: AnyStore) -> None:
    intake = Intake(CallbackLease("sender-a", 60_000))
    store.callback_intake = intake
    owing = [await end(store, callback=owes) for owes in (True, False, True)]

    assert [task.id for _delivery, task in intake.taken] == [owing[0], owing[2]]
    assert intake.leased == 3
    assert intake.unleased == 1
    delivery, task = intake.taken[0]
    assert (delivery.task_id, delivery.url, delivery.state, delivery.attempts) == (
        task.id,
        HOOK,
        DeliveryState.PENDING,
        0,
    )
    assert task.state.value == "failed"
    # No other sender can claim them: they are leased to sender-a.
    assert await store.claim_deliveries("sender-b", 10, LEASE) == []
    # The rows are the outbox's all the same: recorded under sender-a's lease as a claim's are.
    recorded = await store.record_attempts(
        "sender-a", [(d, result(1, 200, DeliveryState.DELIVERED)) for d, _task in intake.taken]
    )
    assert recorded == [True, True]
    [stored] = await store.deliveries_of_task(owing[0])
    assert stored.id == delivery.id
    assert stored.state is DeliveryState.DELIVERED


async def test_a_callback_handed_to_a_sender_that_died_is_claimed_once_its_lease_ends(
    store: AnyStore,
) -> None:
    store.callback_intake = Intake(CallbackLease("sender-gone", 1))  # then its process dies
    task_id = await end(store, callback=True)
    await asyncio.sleep(0.01)
    [claimed] = await store.claim_deliveries("sender-b", 10, LEASE)
    assert claimed.task_id == task_id
    assert claimed.attempts == 0


async def test_without_a_sender_here_the_callback_waits_for_a_claim(store: AnyStore) -> None:
    store.callback_intake = Intake(None)  # stopping, full, or tracing: it leases nothing
    task_id = await end(store, callback=True)
    [claimed] = await store.claim_deliveries("sender-b", 10, LEASE)
    assert claimed.task_id == task_id


async def test_an_ending_said_to_owe_no_callback_holds_no_sending_slot(store: AnyStore) -> None:
    intake = Intake(CallbackLease("sender-a", 60_000))
    store.callback_intake = intake
    task = make_task()
    await store.insert_task(task)
    [claim] = await store.claim({"m": 1}, "w1", 1, LEASE)

    assert await store.finish(claim.task.id, "w1", claim.attempt, FAILED, callback=False) is not None

    assert (intake.leased, intake.unleased, intake.taken) == (0, 0, [])
