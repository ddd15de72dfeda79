"""A slow receiver cannot hold the sender's slots from the others, and attempts that finish
together are recorded together.

The receivers are real HTTP/1.1 servers on loopback. The slow one holds every request until the
test releases it; assertions are on order and counts (what arrived before the release, how many
requests a receiver had open at once, how many store calls), never on durations.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from test_webhook_delivery_inprocess import Harness, StartGateway, start_gateway

from loopback_http import LoopbackServer

__all__ = ["start_gateway"]  # the fixture, imported to be used here


@dataclass
class HeldReceiver(LoopbackServer):
    """Answers 200 to each request once `released` is set; counts requests open at once."""

    released: asyncio.Event = field(default_factory=asyncio.Event)
    arrivals_ns: list[int] = field(default_factory=list)
    open_now: int = 0
    most_open: int = 0
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def wait_for(self, count: int, timeout: float) -> bool:
        """Whether `count` requests arrived within `timeout` seconds (a bound, not a measure)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while len(self.arrivals_ns) < count:
                    self._arrived.clear()
                    await self._arrived.wait()
        return len(self.arrivals_ns) >= count

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.lower().split(b"\r\n")
                if line.startswith(b"content-length:")
            ),
            0,
        )
        await reader.readexactly(length)
        self.arrivals_ns.append(time.time_ns())
        self._arrived.set()
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            await self.released.wait()
        finally:
            self.open_now -= 1
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        return True


@pytest.fixture
async def receivers() -> AsyncIterator[list[HeldReceiver]]:
    started: list[HeldReceiver] = []
    yield started
    for receiver in started:
        receiver.released.set()
        await receiver.shut()


async def held(receivers: list[HeldReceiver], *, released: bool = False) -> HeldReceiver:
    receiver = HeldReceiver()
    if released:
        receiver.released.set()
    await receiver.listen()
    receivers.append(receiver)
    return receiver


async def all_delivered(gate: Harness, task_ids: Sequence[str], timeout: float = 30.0) -> None:
    for task_id in task_ids:
        assert (await gate.wait_ended(task_id, timeout=timeout))["state"] == "delivered"


async def test_a_slow_receiver_does_not_hold_the_slots_of_another(
    start_gateway: StartGateway, receivers: list[HeldReceiver]
) -> None:
    """Eight slots in all, two per host at most: ten callbacks to a receiver that answers nothing
    yet hold two slots (the rest go back to the outbox, unsent), and three callbacks to another
    receiver all arrive before the first one answers anything. Before, the slow receiver had all
    eight slots and the others waited for its answers."""
    gate = await start_gateway(webhook_concurrency=8, webhook_host_concurrency=2, webhook_timeout_s=60)
    slow = await held(receivers)
    fast = await held(receivers, released=True)
    slow_tasks = [await gate.submit(slow.url) for _ in range(10)]
    assert await slow.wait_for(2, timeout=10)

    fast_tasks = [await gate.submit(fast.url) for _ in range(3)]
    fast.released.set()
    arrived_in_time = await fast.wait_for(3, timeout=10)
    released_ns = time.time_ns()
    slow.released.set()

    assert arrived_in_time, f"{len(fast.arrivals_ns)} of 3 callbacks to the fast receiver arrived"
    assert all(at < released_ns for at in fast.arrivals_ns[:3])
    assert slow.most_open <= 2  # its host's bound, while it held them all
    await all_delivered(gate, fast_tasks)
    await all_delivered(gate, slow_tasks)
    assert len(slow.arrivals_ns) == 10  # given back and sent later, each once: no attempt lost
    for task_id in slow_tasks:
        [delivery] = await gate.deliveries(task_id)
        assert [a["statusCode"] for a in delivery["attempts"]] == [200]


async def test_a_burst_is_claimed_and_recorded_in_batches(
    start_gateway: StartGateway, receivers: list[HeldReceiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twenty callbacks owed while the sender is stopped, then sent to a receiver that answers
    the first ones together: fewer claims than deliveries, and fewer store writes than attempts
    (each used to cost one of each)."""
    gate = await start_gateway(webhook_concurrency=64, webhook_host_concurrency=32)
    receiver = await held(receivers)
    sender, store = gate.gateway.webhooks, gate.gateway.store
    await sender.stop()
    task_ids = [await gate.submit(receiver.url) for _ in range(20)]
    for task_id in task_ids:
        await gate.wait_delivery(task_id, lambda d: d["state"] == "pending")
    batches: list[int] = []
    claims: list[int] = []
    record_attempts, claim_deliveries = store.record_attempts, store.claim_deliveries

    async def counting_record(owner: str, attempts: Sequence[Any]) -> list[bool]:
        batches.append(len(attempts))
        return await record_attempts(owner, attempts)

    async def counting_claim(owner: str, limit: int, lease_ms: int) -> Sequence[Any]:
        found = await claim_deliveries(owner, limit, lease_ms)
        claims.append(len(found))
        return found

    monkeypatch.setattr(store, "record_attempts", counting_record)
    monkeypatch.setattr(store, "claim_deliveries", counting_claim)
    await sender.start()
    assert await receiver.wait_for(4, timeout=20)  # the host's first window
    receiver.released.set()
    await all_delivered(gate, task_ids)

    assert sum(batches) == 20
    assert len(batches) < 20, f"one write per attempt: {batches}"
    assert sum(claims) == 20, f"claimed again: {claims}"
    assert len([n for n in claims if n]) < 20, f"one claim per delivery: {claims}"


async def test_a_slow_record_does_not_hold_the_sending_slots(
    start_gateway: StartGateway, receivers: list[HeldReceiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two slots, and the store's writes of attempts held back: the six callbacks owed all go out
    meanwhile, since an attempt frees its slot once answered, not once recorded. Nothing is lost
    for it: once the writes go through, every delivery reads as delivered after one attempt.
    Before, the two answered attempts kept both slots until their record was written."""
    gate = await start_gateway(webhook_concurrency=2, webhook_host_concurrency=2)
    receiver = await held(receivers, released=True)
    sender, store = gate.gateway.webhooks, gate.gateway.store
    await sender.stop()
    task_ids = [await gate.submit(receiver.url) for _ in range(6)]
    for task_id in task_ids:
        await gate.wait_delivery(task_id, lambda d: d["state"] == "pending")
    writes_open = asyncio.Event()
    record_attempts = store.record_attempts

    async def held_record(owner: str, attempts: Sequence[Any]) -> list[bool]:
        await writes_open.wait()
        return await record_attempts(owner, attempts)

    monkeypatch.setattr(store, "record_attempts", held_record)
    await sender.start()
    sent_all = await receiver.wait_for(6, timeout=20)
    writes_open.set()
    assert sent_all, f"{len(receiver.arrivals_ns)} of 6 callbacks went out while the records waited"
    await all_delivered(gate, task_ids)
    for task_id in task_ids:
        [delivery] = await gate.deliveries(task_id)
        assert [a["statusCode"] for a in delivery["attempts"]] == [200]
    assert len(receiver.arrivals_ns) == 6


async def test_callbacks_of_tasks_ending_here_are_handed_over_not_claimed(
    start_gateway: StartGateway, receivers: list[HeldReceiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sender runs in the process where the tasks end: each callback comes to it with its task
    in the ending's transaction, so no claim (a write) and no read of the task is made for it.
    Before, every callback was claimed from the outbox and its task read again."""
    gate = await start_gateway(webhook_concurrency=8, webhook_host_concurrency=8)
    receiver = await held(receivers, released=True)
    store = gate.gateway.store
    claimed: list[int] = []
    reads: list[int] = []
    claim_deliveries, callback_tasks = store.claim_deliveries, store.callback_tasks

    async def counting_claim(owner: str, limit: int, lease_ms: int) -> Sequence[Any]:
        found = await claim_deliveries(owner, limit, lease_ms)
        claimed.append(len(found))
        return found

    async def counting_read(task_ids: Sequence[str]) -> Any:
        reads.append(len(task_ids))
        return await callback_tasks(task_ids)

    monkeypatch.setattr(store, "claim_deliveries", counting_claim)
    monkeypatch.setattr(store, "callback_tasks", counting_read)
    task_ids = [await gate.submit(receiver.url) for _ in range(6)]
    await all_delivered(gate, task_ids)

    assert len(receiver.arrivals_ns) == 6
    assert sum(claimed) == 0, f"claimed from the outbox: {claimed}"
    assert sum(reads) == 0, f"tasks read again: {reads}"
    for task_id in task_ids:
        [delivery] = await gate.deliveries(task_id)
        assert [a["statusCode"] for a in delivery["attempts"]] == [200]
