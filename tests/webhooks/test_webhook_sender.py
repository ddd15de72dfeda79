"""The sender's pure retry policy: `next_step` (what follows an attempt). Reading `Retry-After`
is the wire layer's (tests/wire/test_retry_after.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gengate.domain.callback_schedule import DEFAULT_RETRY_SCHEDULE
from gengate.domain.deliveries import DeliveryState
from gengate.webhooks.retry import MAX_RETRY_AFTER_S, Outcome, next_step

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
