"""The one callback retry schedule: its default, when a new callback's first attempt is due (what
the store writes when a task ends) and the wait after each attempt (what the sender reads)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gengate.domain.callback_schedule import DEFAULT_RETRY_SCHEDULE, delay_after, first_delay_ms
from gengate.settings import load_settings

schedules = st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=10)


def test_the_default_is_about_a_day_and_a_half() -> None:
    assert DEFAULT_RETRY_SCHEDULE == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    assert 24 * 3600 <= sum(DEFAULT_RETRY_SCHEDULE) <= 48 * 3600


def test_settings_default_to_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GENGATE_WEBHOOK_RETRY_SCHEDULE", raising=False)
    (tmp_path / "gengate.toml").write_text("")
    assert tuple(load_settings(tmp_path / "gengate.toml").webhook_retry_schedule) == DEFAULT_RETRY_SCHEDULE


@given(schedules)
def test_first_attempt_waits_the_first_delay(schedule: list[float]) -> None:
    assert first_delay_ms(schedule) == int(schedule[0] * 1000)


@given(schedules)
def test_each_attempt_is_followed_by_the_next_delay_until_the_round_ends(schedule: list[float]) -> None:
    waits = [delay_after(schedule, k) for k in range(1, len(schedule) + 2)]
    assert waits == [*schedule[1:], None, None]
