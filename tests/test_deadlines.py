"""Shared deadlines (:mod:`gengate.deadlines`): never met early, let go by a dict pop, one loop
timer per bucket however many deadlines share it."""

from __future__ import annotations

import asyncio

from gengate.deadlines import RESOLUTION_S, Bucket, Deadlines, cancel, deadlines_of


class Waiter:
    def __init__(self, loop: asyncio.AbstractEventLoop, on_due: object = None) -> None:
        self.loop = loop
        self.told: list[float] = []
        self.on_due = on_due

    def due(self) -> None:
        self.told.append(self.loop.time())
        if callable(self.on_due):
            self.on_due()


async def test_a_deadline_is_met_never_early() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop)
    whens = [loop.time() + 0.01 * i for i in range(1, 6)]
    waiters = [Waiter(loop) for _ in whens]
    for when, waiter in zip(whens, waiters, strict=True):
        deadlines.add(when, waiter)
    await asyncio.sleep(0.1 + RESOLUTION_S)
    for when, waiter in zip(whens, waiters, strict=True):
        assert len(waiter.told) == 1
        assert waiter.told[0] >= when


async def test_many_deadlines_in_one_bucket_make_one_loop_timer() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop)
    when = loop.time() + 0.03
    before = len(loop._scheduled)  # type: ignore[attr-defined]  # (the loop's timers: none here otherwise)
    waiters = [Waiter(loop) for _ in range(1000)]
    buckets = {id(deadlines.add(when, waiter)) for waiter in waiters}
    assert len(buckets) == 1
    assert len(loop._scheduled) == before + 1  # type: ignore[attr-defined]
    await asyncio.sleep(0.03 + 2 * RESOLUTION_S)
    assert all(len(waiter.told) == 1 for waiter in waiters)


async def test_a_waiter_let_go_is_not_told() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop)
    kept, gone = Waiter(loop), Waiter(loop)
    when = loop.time() + 0.02
    deadlines.add(when, kept)
    bucket = deadlines.add(when, gone)
    cancel(bucket, gone)
    cancel(bucket, gone)  # twice: no-op
    cancel(None, gone)
    await asyncio.sleep(0.02 + 2 * RESOLUTION_S)
    assert len(kept.told) == 1
    assert gone.told == []


async def test_one_told_may_let_go_of_another_of_its_bucket_or_set_itself_again() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop)
    when = loop.time() + 0.02
    later: Waiter | None = None
    bucket: Bucket = {}

    def let_go_and_again() -> None:
        assert later is not None
        cancel(bucket, later)
        if len(first.told) == 1:
            deadlines.add(loop.time() + 0.02, first)

    first = Waiter(loop, let_go_and_again)
    bucket = deadlines.add(when, first)
    later, last = Waiter(loop), Waiter(loop)
    assert deadlines.add(when, later) is bucket
    deadlines.add(when, last)
    await asyncio.sleep(0.04 + 3 * RESOLUTION_S)
    assert later.told == []
    assert len(last.told) == 1  # (the ones after it in the bucket are still told)
    assert len(first.told) == 2


async def test_a_loop_has_one_set_of_deadlines() -> None:
    loop = asyncio.get_running_loop()
    assert deadlines_of(loop) is deadlines_of(loop)
