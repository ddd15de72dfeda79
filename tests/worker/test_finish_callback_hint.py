"""A worker ending a task tells the store whether the task owes a callback, so that only the
endings of tasks with a `callback_url` reserve one of the sender's slots for a hand-over."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_worker_pool import Rig, open_rig, spec

from gengate.domain.catalogue import Catalogue
from gengate.domain.deliveries import Delivery
from gengate.domain.task import Task
from gengate.providers.demo import demo_providers
from gengate.store.handover import CallbackLease


class Intake:
    def __init__(self) -> None:
        self.leased = self.unleased = 0
        self.taken: list[str] = []

    def lease(self) -> CallbackLease | None:
        self.leased += 1
        return CallbackLease("sender-a", 60_000)

    def take(self, delivery: Delivery, task: Task) -> None:
        self.taken.append(task.id)

    def unlease(self) -> None:
        self.unleased += 1


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with open_rig(tmp_path, demo_providers(), Catalogue({"echo": spec("echo", "demo-echo")})) as opened:
        yield opened


async def test_only_endings_of_tasks_with_a_callback_ask_for_a_sending_slot(rig: Rig) -> None:
    intake = Intake()
    rig.store.callback_intake = intake
    plain = [await rig.submit("echo") for _ in range(3)]
    called = await rig.submit("echo", callback_url="http://127.0.0.1:9/hook")

    await asyncio.gather(*(rig.until_done(task) for task in [*plain, called]))

    assert intake.taken == [called.id]
    assert (intake.leased, intake.unleased) == (1, 0)
