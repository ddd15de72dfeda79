"""Server processes settle the collector once they have started."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from gengate import heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_settle_freezes_what_lives_now_and_raises_the_young_threshold() -> None:
    before = gc.get_threshold()
    heap.settle_after_start()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, before[1], before[2])
    # Objects made afterwards are still collected, cycles included.
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1
