"""Task and callback ids: unguessable (128 random bits), and sorting by the time they were made, so
that new rows land at the right edge of their indexes."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gengate.domain import ids
from gengate.domain.deliveries import new_delivery_id
from gengate.domain.ids import new_task_id, sortable_ms

URL_SAFE_30 = r"[A-Za-z0-9_-]{30}"
MAX_MS = 2**48 - 1


@given(st.integers(0, MAX_MS), st.integers(0, MAX_MS))
def test_the_time_text_sorts_as_the_milliseconds(a: int, b: int) -> None:
    assert len(sortable_ms(a)) == 8
    assert (sortable_ms(a) < sortable_ms(b)) == (a < b)


def test_ids_are_the_prefix_the_time_and_22_random_characters() -> None:
    assert re.fullmatch("task_" + URL_SAFE_30, new_task_id())
    assert re.fullmatch("msg_" + URL_SAFE_30, new_delivery_id())
    made = {new_task_id() for _ in range(2000)}
    assert len(made) == 2000
    assert len({task_id[13:] for task_id in made}) == 2000  # the random part alone differs


def test_ids_made_later_sort_after(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([1_764_547_200_000_000_000, 1_764_547_200_001_000_000, 1_764_547_260_000_000_000])
    monkeypatch.setattr(ids.time, "time_ns", lambda: next(clock))
    monkeypatch.setattr(ids, "_last_prefix", (-1, ""))
    monkeypatch.setattr(ids, "_last_task", (-1, "", 0))
    made = [new_task_id() for _ in range(3)]
    assert made == sorted(made)
    assert len({task_id[5:13] for task_id in made}) == 3


def test_task_ids_of_one_millisecond_sort_in_the_order_made(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ids.time, "time_ns", lambda: 1_764_547_200_000_000_000)
    monkeypatch.setattr(ids, "_last_task", (-1, "", 0))
    made = [new_task_id() for _ in range(1000)]
    assert made == sorted(made)
    assert len({task_id[5:13] for task_id in made}) == 1
    steps = {number(b[13:]) - number(a[13:]) for a, b in itertools.pairwise(made)}
    assert min(steps) > 0
    assert len(steps) > 1  # (the step is random: the next id is not the last one plus one)


def number(text: str) -> int:
    """The number sortable text encodes, 6 bits a character."""
    value = 0
    for char in text:
        value = value * 64 + ids._SORTABLE.index(char)
    return value


def test_a_clock_that_steps_back_does_not_make_ids_sort_before(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([1_764_547_200_005_000_000, 1_764_547_200_001_000_000])
    monkeypatch.setattr(ids.time, "time_ns", lambda: next(clock))
    monkeypatch.setattr(ids, "_last_task", (-1, "", 0))
    first, second = new_task_id(), new_task_id()
    assert first < second


@given(st.integers(0, 2**132 - 1), st.integers(0, 2**132 - 1))
def test_the_random_text_sorts_as_its_number(a: int, b: int) -> None:
    assert len(ids._sortable_132(a)) == 22
    assert (ids._sortable_132(a) < ids._sortable_132(b)) == (a < b)
