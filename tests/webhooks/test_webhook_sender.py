"""The sender's pure retry policy: `next_step` (what follows an attempt) and `retry_after_seconds`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gengate.domain.deliveries import DeliveryState
from gengate.settings import DEFAULT_RETRY_SCHEDULE
from gengate.webhooks.sender import MAX_RETRY_AFTER_S, Outcome, next_step, retry_after_seconds

NOW = 1_800_000_000_000

delays = st.floats(min_value=0, max_value=100_000, allow_nan=False)
schedules = st.lists(delays, min_size=1, max_size=10)
not_2xx = st.integers(100, 599).filter(lambda code: not 200 <= code < 300 and code != 410)
failures = st.builds(
    Outcome,
    status_code=st.one_of(st.none(), not_2xx),
    error=st.just("failed"),
    retry_after_s=st.one_of(st.none(), st.floats(min_value=0, max_value=10 * MAX_RETRY_AFTER_S)),
)


# -- next_step ------------------------------------------------------------------------------
@given(code=st.integers(200, 299), attempts=st.integers(1, 50), schedule=schedules)
def test_any_2xx_is_delivered_whatever_the_attempt(code: int, attempts: int, schedule: list[float]) -> None:
    assert next_step(Outcome(code, None), attempts, schedule, NOW) == (DeliveryState.DELIVERED, None)


@given(attempts=st.integers(1, 50), schedule=schedules, retry_after=st.one_of(st.none(), delays))
def test_410_fails_at_once(attempts: int, schedule: list[float], retry_after: float | None) -> None:
    outcome = Outcome(410, "HTTP 410", retry_after)
    assert next_step(outcome, attempts, schedule, NOW) == (DeliveryState.FAILED, None)


@given(outcome=failures, schedule=schedules, data=st.data())
def test_a_failure_retries_after_the_schedule_until_it_runs_out(
    outcome: Outcome, schedule: list[float], data: st.DataObject
) -> None:
    attempts = data.draw(st.integers(1, len(schedule) + 3))
    state, next_at = next_step(outcome, attempts, schedule, NOW)
    if attempts >= len(schedule):
        assert (state, next_at) == (DeliveryState.FAILED, None)
        return
    assert state is DeliveryState.PENDING
    assert next_at is not None
    delay_ms = next_at - NOW
    assert delay_ms >= int(schedule[attempts] * 1000)
    if outcome.retry_after_s is None:
        assert delay_ms == int(schedule[attempts] * 1000)
    else:
        wanted = min(outcome.retry_after_s, MAX_RETRY_AFTER_S)
        assert delay_ms == int(max(schedule[attempts], wanted) * 1000)
        assert delay_ms <= max(int(schedule[attempts] * 1000), MAX_RETRY_AFTER_S * 1000)


def test_the_schedule_gives_one_attempt_per_entry() -> None:
    """schedule[k] is the wait after the k-th attempt; after len(schedule) attempts it is over."""
    schedule = [0.0, 0.2, 0.5]
    fail = Outcome(500, "HTTP 500")
    assert next_step(fail, 1, schedule, NOW) == (DeliveryState.PENDING, NOW + 200)
    assert next_step(fail, 2, schedule, NOW) == (DeliveryState.PENDING, NOW + 500)
    assert next_step(fail, 3, schedule, NOW) == (DeliveryState.FAILED, None)


def test_default_schedule() -> None:
    fail = Outcome(None, "connection refused")
    waits = [next_step(fail, k, DEFAULT_RETRY_SCHEDULE, 0)[1] for k in range(1, len(DEFAULT_RETRY_SCHEDULE))]
    assert waits == [5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000]
    assert next_step(fail, len(DEFAULT_RETRY_SCHEDULE), DEFAULT_RETRY_SCHEDULE, 0)[0] is DeliveryState.FAILED


def test_retry_after_wins_only_when_longer_and_is_capped() -> None:
    schedule = [0.0, 0.2, 10.0]
    assert next_step(Outcome(503, "x", 2.0), 1, schedule, NOW)[1] == NOW + 2_000
    assert next_step(Outcome(503, "x", 2.0), 2, schedule, NOW)[1] == NOW + 10_000
    assert next_step(Outcome(429, "x", 1e12), 1, schedule, NOW)[1] == NOW + MAX_RETRY_AFTER_S * 1000


def test_a_redirect_or_no_answer_is_a_failure() -> None:
    assert not Outcome(302, "HTTP 302 (redirects are not followed)").delivered
    assert not Outcome(None, "no answer within 10 s").delivered
    assert next_step(Outcome(301, "HTTP 301"), 1, [0, 1], NOW)[0] is DeliveryState.PENDING
    assert Outcome(410, "gone").gone
    assert not Outcome(404, "missing").gone


# -- retry_after_seconds -----------------------------------------------------------------------
@given(
    seconds=st.integers(0, 10**12), left=st.sampled_from(["", " ", "\t"]), right=st.sampled_from(["", " "])
)
def test_delta_seconds(seconds: int, left: str, right: str) -> None:
    assert retry_after_seconds(f"{left}{seconds}{right}") == float(seconds)


@pytest.mark.parametrize("value", [None, "", "   "])
def test_absent(value: str | None) -> None:
    assert retry_after_seconds(value) is None


@pytest.mark.parametrize("value", ["soon", "-1", "1.5", "2 s", "0x10", "Thu, 99 Foo 2020 00:00:00 GMT"])
def test_unreadable_is_ignored(value: str) -> None:
    assert retry_after_seconds(value) is None


@given(ahead=st.integers(2, 10**7))
def test_http_date_in_the_future(ahead: int) -> None:
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=ahead)
    seconds = retry_after_seconds(format_datetime(when, usegmt=True))
    assert seconds is not None
    assert ahead - 2 <= seconds <= ahead


@given(ago=st.integers(0, 10**8))
def test_http_date_in_the_past_is_now(ago: int) -> None:
    when = datetime.now(UTC) - timedelta(seconds=ago)
    assert retry_after_seconds(format_datetime(when, usegmt=True)) == 0.0


def test_http_date_without_zone_is_utc() -> None:
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=60)
    seconds = retry_after_seconds(when.strftime("%a, %d %b %Y %H:%M:%S -0000"))
    assert seconds is not None
    assert 58 <= seconds <= 60


@given(value=st.text(max_size=40))
def test_any_header_value_gives_seconds_or_none(value: str) -> None:
    seconds = retry_after_seconds(value)
    assert seconds is None or seconds >= 0


@given(value=st.text(alphabet=st.characters(categories=["Nd", "No", "Zs"]), max_size=8))
def test_any_digits_give_seconds_or_none(value: str) -> None:
    seconds = retry_after_seconds(value)
    assert seconds is None or seconds >= 0


@pytest.mark.parametrize("value", ["²", "¹⁰", "①", "٣", "１２"])
def test_digit_like_characters_are_ignored(value: str) -> None:
    """str.isdigit() admits these and float() refuses some; httpx reads a Retry-After byte 0xB2 as
    "²" (latin-1). They used to raise ValueError, crashing the attempt (fixed in 05ed1a8)."""
    assert retry_after_seconds(value) is None


def test_refused_literal_addresses_fail_at_once_names_are_retried() -> None:
    from gengate.domain.deliveries import DeliveryState
    from gengate.webhooks.sender import Outcome, _refused_for_good, next_step

    assert _refused_for_good("http://127.0.0.1/hook")
    assert _refused_for_good("ftp://example.com/")
    assert not _refused_for_good("https://hooks.example.com/x")
    permanent = Outcome(None, "refused", permanent=True)
    assert next_step(permanent, 1, [0, 5, 300], now=0) == (DeliveryState.FAILED, None)
    assert next_step(Outcome(None, "refused"), 1, [0, 5, 300], now=0) == (DeliveryState.PENDING, 5000)
