"""Why a submit is refused at the door: the errors, their messages and how long to wait.

The store counts (in the insert's transaction); what a refusal says is decided here.
"""

from __future__ import annotations

from gengate.domain.errors import TooManyRequests, Unavailable, UsedUp

#: What a client waits before submitting again to a full queue, or with all its slots taken.
QUEUE_FULL_RETRY_S = 5
CONCURRENCY_RETRY_S = 1


def queue_full(model: str, max_queue: int) -> Unavailable:
    return Unavailable(
        f"The queue of model '{model}' is full ({max_queue} tasks waiting); retry later.",
        retry_after_s=QUEUE_FULL_RETRY_S,
    )


def too_many_unfinished(max_concurrent: int) -> TooManyRequests:
    return TooManyRequests(
        f"This key already has {max_concurrent} unfinished tasks, its limit; submit again when one ends.",
        retry_after_s=CONCURRENCY_RETRY_S,
    )


def used_up(charge: int, left: int | None) -> UsedUp:
    return UsedUp(f"This task costs {charge} credits and the key has {left} left.")
