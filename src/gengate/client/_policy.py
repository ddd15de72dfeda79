"""When to try again and how long to wait: retry decisions and the polling schedule, free of IO."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import httpx
import stamina

from gengate.wire.errors import APIError

from ._protocol import Call

#: Longest `Retry-After` we honour; a longer hint is a server we should stop waiting on.
MAX_RETRY_AFTER: Final = 30.0
RETRY_ATTEMPTS: Final = 4

POLL_FIRST: Final = 0.25
POLL_FACTOR: Final = 1.5
POLL_CAP: Final = 3.0


def retry_decision(exc: Exception, *, idempotent: bool) -> bool | float:
    """Whether to repeat a request that raised `exc`: `False`, `True` (use backoff) or seconds to wait.

    Only repeatable requests are retried, and only on trouble that can pass: 429, 5xx and transport
    errors. Other 4xx are the caller's mistake and would fail the same way again.
    """
    if not idempotent:
        return False
    if isinstance(exc, APIError):
        if not exc.retryable:
            return False
        return True if exc.retry_after is None else min(exc.retry_after, MAX_RETRY_AFTER)
    return isinstance(exc, httpx.TransportError)


def retry_hook(call: Call) -> Callable[[Exception], bool | float]:
    """The stamina backoff hook for one call."""

    def hook(exc: Exception) -> bool | float:
        return retry_decision(exc, idempotent=call.idempotent)

    return hook


def sync_retrier() -> stamina.RetryingCaller:
    """Exponential backoff with jitter; stamina's test mode and `set_active(False)` apply."""
    return stamina.RetryingCaller(
        attempts=RETRY_ATTEMPTS, timeout=90.0, wait_initial=0.5, wait_max=8.0, wait_jitter=0.5
    )


def async_retrier() -> stamina.AsyncRetryingCaller:
    """The async twin of `sync_retrier`, same policy."""
    return stamina.AsyncRetryingCaller(
        attempts=RETRY_ATTEMPTS, timeout=90.0, wait_initial=0.5, wait_max=8.0, wait_jitter=0.5
    )


class PollSchedule:
    """Delays between status polls: 0.25 s growing x1.5 up to 3 s, never past the deadline.

    Quick tasks are seen done quickly; long ones cost at most one request every 3 s.
    """

    def __init__(self, timeout: float, start: float) -> None:
        self._deadline = start + timeout
        self._next = POLL_FIRST

    def next_delay(self, now: float) -> float | None:
        """Seconds to sleep before the next poll, or `None` once the deadline has passed."""
        remaining = self._deadline - now
        if remaining <= 0:
            return None
        delay = min(self._next, remaining)
        self._next = min(self._next * POLL_FACTOR, POLL_CAP)
        return delay
