"""How a task ends, decided here and applied by the store in one place.

A worker's run ends with an :data:`Outcome`; a client cancels; a lease runs out. Each becomes
an :class:`Ending` (the state, `failCode`, message, and whether a refund is owed), or, for a
lease that ran out with attempts left, a :class:`Requeue`. The store writes the state change,
the outbox row (when the task has a `callback_url`) and the refund in the transaction that
ends the task; it never chooses codes or messages itself.
"""

from __future__ import annotations

import msgspec

from gengate.domain.states import FailCode, TaskState
from gengate.domain.task import ResultFile

CANCELED_MESSAGE = "Task canceled by the client."


class Succeeded(msgspec.Struct, frozen=True):
    """How a run ended well: its files, and its plain output values as JSON text (None: none)."""

    files: tuple[ResultFile, ...]
    output_json: str | None = None


class Failed(msgspec.Struct, frozen=True):
    """How a run ended badly: the `failCode` and the message the client sees."""

    fail_code: str
    fail_msg: str


Outcome = Succeeded | Failed


class Ending(msgspec.Struct, frozen=True):
    """A terminal state to write. Fields: `state` (success or failed), `fail_code` and
    `fail_msg` (None on success), `refund` (the task's charge goes back to its key). Every
    ending owes the task's callback, when it has a `callback_url`."""

    state: TaskState
    fail_code: str | None = None
    fail_msg: str | None = None
    refund: bool = False


class Requeue(msgspec.Struct, frozen=True):
    """A lease ran out with attempts left: the task goes back to the queue."""


SUCCESS = Ending(TaskState.SUCCESS)


def failed(fail_code: str, fail_msg: str) -> Ending:
    """A failure ends the task and gives its charge back."""
    return Ending(TaskState.FAILED, fail_code, fail_msg, refund=True)


def ending_of(outcome: Outcome) -> Ending:
    """The ending of a worker's run."""
    if isinstance(outcome, Succeeded):
        return SUCCESS
    return failed(outcome.fail_code, outcome.fail_msg)


def canceled() -> Failed:
    """A client's cancel: a pending task ends with it at once, a running one when its worker stops."""
    return Failed(FailCode.CANCELED, CANCELED_MESSAGE)


def timed_out(timeout_s: float) -> Failed:
    """The model's run took longer than its `timeout_s`."""
    return Failed(FailCode.TIMEOUT, f"The task did not finish within {timeout_s:g} s.")


def internal_error(trace_id: str | None) -> Failed:
    """The gateway itself failed while running the task."""
    return Failed(
        FailCode.INTERNAL_ERROR,
        f"Internal error while running the task; quote trace_id {trace_id} when reporting it.",
    )


def lease_expired(attempts: int, max_attempts: int, cancel_requested: bool) -> Ending | Requeue:
    """What the reaper does with a task whose worker stopped renewing its lease: run it again
    while attempts are left; a task its client canceled ends canceled, never runs again; past
    its attempts it fails WORKER_LOST."""
    if cancel_requested:
        return ending_of(canceled())
    if attempts < max_attempts:
        return Requeue()
    return failed(FailCode.WORKER_LOST, f"The worker running the task was lost {attempts} times.")
