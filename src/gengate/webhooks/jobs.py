"""A delivery the sender works on, with what its attempt needs, and its receiver host."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from gengate.domain.deliveries import Delivery
from gengate.domain.task import Task
from gengate.net.guard import UnsafeUrl, parse_callback_url


@dataclass(slots=True)
class Job:
    """A delivery claimed or handed over, with what its attempt needs (read for a whole batch)."""

    delivery: Delivery
    host: str
    claimed_at: float
    task: Task | None = None
    #: False when the batch's read failed: the attempt reads the task itself.
    task_read: bool = True
    traceparent: str | None = None
    secret: str | BaseException = ""
    #: Its attempt no longer holds a slot of the sender's `concurrency`.
    answered: bool = False


@functools.lru_cache(maxsize=4096)
def host_of(url: str) -> str:
    """The receiver host a URL names (its scheme, host and port): the unit of per-host bounds."""
    try:
        parsed = parse_callback_url(url)
    except UnsafeUrl:
        return ""
    return f"{parsed.scheme}://{parsed.host}:{parsed.port}"
