"""When a callback is tried: the one retry schedule every part reads.

A schedule is a list of delays in seconds: `schedule[0]` before a new callback's first attempt
(the store writes that due time when a task ends), `schedule[k]` after the k-th attempt of a
round (the sender reads it); after `len(schedule)` attempts the round has failed. Operators set
it as `webhook_retry_schedule`, which defaults to :data:`DEFAULT_RETRY_SCHEDULE`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

#: At once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: about 28 hours in all.
DEFAULT_RETRY_SCHEDULE: Final = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)


def first_delay_ms(schedule: Sequence[float]) -> int:
    """How long after a task ends its callback's first attempt is due, in milliseconds."""
    return int(schedule[0] * 1000)


def delay_after(schedule: Sequence[float], attempts_in_round: int) -> float | None:
    """Seconds from the `attempts_in_round`-th attempt to the next; None when the round is over."""
    return schedule[attempts_in_round] if attempts_in_round < len(schedule) else None
