"""Task states and the transitions between them.

The table below is what the store enforces: every statement that moves a task's state takes
its allowed-from state from it (the `{from A to B}` braces of the store's named queries,
checked when they load), so no statement can move a task from a terminal state or skip the
queue. How a task ends is decided in :mod:`gengate.domain.endings`.
"""

from __future__ import annotations

import enum


class TaskState(enum.StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    SUCCESS = "success"
    FAILED = "failed"

    def is_terminal(self) -> bool:
        return self in _TERMINAL


class FailCode(enum.StrEnum):
    """Why a task failed: the `failCode` of the status body, never an HTTP error."""

    CONTENT_VIOLATION = "CONTENT_VIOLATION"
    INVALID_INPUT = "INVALID_INPUT"
    TIMEOUT = "TIMEOUT"
    CANCELED = "CANCELED"
    WORKER_LOST = "WORKER_LOST"
    PROVIDER_ERROR = "PROVIDER_ERROR"
    INTERNAL_ERROR = "INTERNAL_ERROR"


_TERMINAL = frozenset({TaskState.SUCCESS, TaskState.FAILED})

_ALLOWED: dict[TaskState, frozenset[TaskState]] = {
    # pending -> failed is a cancel before any worker saw the task.
    TaskState.PENDING: frozenset({TaskState.PROCESSING, TaskState.FAILED}),
    # processing -> pending is a lease that expired: the task goes back to the queue.
    TaskState.PROCESSING: frozenset({TaskState.SUCCESS, TaskState.FAILED, TaskState.PENDING}),
    TaskState.SUCCESS: frozenset(),
    TaskState.FAILED: frozenset(),
}


class InvalidTransitionError(ValueError):
    """A caller asked for a state change the task model forbids."""


def can_transition(current: TaskState, target: TaskState) -> bool:
    return target in _ALLOWED[current]


def check_transition(current: TaskState, target: TaskState) -> None:
    if not can_transition(current, target):
        raise InvalidTransitionError(f"a {current} task cannot become {target}")
