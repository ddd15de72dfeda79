"""What an attempt's outcome means for its delivery: delivered, failed for good, or when to try
again (the schedule, a receiver's Retry-After, 410 Gone, a URL that can never be called)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gengate.domain.callback_schedule import delay_after
from gengate.domain.clock import now_ms
from gengate.domain.deliveries import AttemptResult, Delivery, DeliveryAttempt, DeliveryState
from gengate.net.guard import UnsafeUrl, parse_callback_url

#: The longest a receiver's Retry-After may postpone the next attempt.
MAX_RETRY_AFTER_S = 24 * 3600


@dataclass(frozen=True, slots=True)
class Outcome:
    """An attempt's result as the retry policy sees it."""

    status_code: int | None
    error: str | None
    retry_after_s: float | None = None
    #: No retry can succeed (a URL the guard refuses for good): fail now, not in a day and a half.
    permanent: bool = False

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        return self.status_code == 410

    @property
    def overloaded(self) -> bool:
        """The receiver could not keep up (no answer, 429, 503): its host gets fewer at once."""
        return (self.status_code is None and not self.permanent) or self.status_code in (429, 503)


def next_step(
    outcome: Outcome, attempts_in_round: int, schedule: Sequence[float], now: int
) -> tuple[DeliveryState, int | None]:
    """Delivered, failed for good, or when to try again: `schedule[k]` seconds after the k-th
    attempt of this round, or later if the receiver's Retry-After asks for it."""
    if outcome.delivered:
        return DeliveryState.DELIVERED, None
    delay = delay_after(schedule, attempts_in_round)
    if outcome.gone or outcome.permanent or delay is None:
        return DeliveryState.FAILED, None
    if outcome.retry_after_s is not None:
        delay = max(delay, min(outcome.retry_after_s, MAX_RETRY_AFTER_S))
    return DeliveryState.PENDING, now + int(delay * 1000)


def refused_for_good(url: str) -> bool:
    """A malformed URL, or an address literal the guard refuses, cannot become deliverable; a
    name might resolve elsewhere later (or the operator admit its range), so it is retried."""
    try:
        return parse_callback_url(url).ip is not None
    except UnsafeUrl:
        return True


def attempt_result(
    delivery: Delivery,
    attempt_no: int,
    started: int,
    outcome: Outcome,
    latency_ms: int | None,
    *,
    schedule: Sequence[float],
) -> AttemptResult:
    """The attempt's record and what follows it (the schedule counts from the latest redelivery)."""
    state, next_at = next_step(outcome, attempt_no - delivery.round_start, schedule, now_ms())
    attempt = DeliveryAttempt(attempt_no, started, outcome.status_code, latency_ms, outcome.error)
    return AttemptResult(attempt, state, next_at)
