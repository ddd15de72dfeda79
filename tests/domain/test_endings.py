"""How a task ends, decided in the domain: the store only applies these decisions."""

from __future__ import annotations

from gengate.domain import endings
from gengate.domain.endings import Ending, Failed, Requeue, Succeeded
from gengate.domain.states import FailCode, TaskState


def test_a_success_ends_without_a_refund() -> None:
    assert endings.ending_of(Succeeded(())) == Ending(TaskState.SUCCESS, refund=False)


def test_a_failure_keeps_its_code_and_message_and_refunds() -> None:
    ending = endings.ending_of(Failed(FailCode.PROVIDER_ERROR, "upstream said no"))
    assert ending == Ending(TaskState.FAILED, "PROVIDER_ERROR", "upstream said no", refund=True)


def test_cancel_and_timeout_are_failures_with_their_codes() -> None:
    assert endings.canceled() == Failed("CANCELED", endings.CANCELED_MESSAGE)
    assert endings.timed_out(2.5) == Failed("TIMEOUT", "The task did not finish within 2.5 s.")
    assert endings.internal_error("t1").fail_code == FailCode.INTERNAL_ERROR
    assert "t1" in endings.internal_error("t1").fail_msg


def test_an_expired_lease_with_attempts_left_goes_back_to_the_queue() -> None:
    assert endings.lease_expired(1, 3, cancel_requested=False) == Requeue()
    assert endings.lease_expired(2, 3, cancel_requested=False) == Requeue()


def test_an_expired_lease_past_its_attempts_fails_worker_lost() -> None:
    ending = endings.lease_expired(3, 3, cancel_requested=False)
    assert isinstance(ending, Ending)
    assert (ending.state, ending.fail_code, ending.refund) == (TaskState.FAILED, FailCode.WORKER_LOST, True)
    assert "3 times" in (ending.fail_msg or "")


def test_a_canceled_task_whose_worker_died_ends_canceled_never_runs_again() -> None:
    ending = endings.lease_expired(1, 3, cancel_requested=True)
    assert isinstance(ending, Ending)
    assert (ending.fail_code, ending.fail_msg) == (FailCode.CANCELED, endings.CANCELED_MESSAGE)
