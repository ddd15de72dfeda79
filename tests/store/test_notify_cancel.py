"""A stop cancels the tasks waiting on the change hub; the cancel must not be lost when it comes
in the same turn of the loop as the change they wait for. Python 3.11's `asyncio.wait_for`
loses it then (gh-86296): the waiting task goes on as if nothing happened, and a stop that
awaits it waits forever (the callback sender's stop hung so, now and then, under load)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from gengate.store.notify import ChangeHub


async def cancelled_as_it_is_woken(wait: Callable[[], Awaitable[None]], wake: Callable[[], None]) -> bool:
    task = asyncio.create_task(wait())
    for _ in range(3):  # it is waiting now
        await asyncio.sleep(0)
    wake()
    task.cancel()  # in the same turn as the change
    try:
        await task
    except asyncio.CancelledError:
        return True
    return False


@pytest.mark.parametrize("which", ["deliveries", "work"])
async def test_a_cancel_that_comes_with_the_change_is_kept(which: str) -> None:
    hub = ChangeHub()
    if which == "deliveries":
        kept = await cancelled_as_it_is_woken(lambda: hub.wait_deliveries(10), hub.deliveries_added)
    else:
        kept = await cancelled_as_it_is_woken(lambda: hub.wait_work(10), hub.work_added)
    assert kept, "the waiting task returned as if woken: its cancel was lost"
