from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gengate.domain.states import InvalidTransitionError, TaskState, can_transition, check_transition


def test_terminal_states() -> None:
    assert {s for s in TaskState if s.is_terminal()} == {TaskState.SUCCESS, TaskState.FAILED}


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (TaskState.PENDING, TaskState.PROCESSING),
        (TaskState.PENDING, TaskState.FAILED),
        (TaskState.PROCESSING, TaskState.SUCCESS),
        (TaskState.PROCESSING, TaskState.FAILED),
        (TaskState.PROCESSING, TaskState.PENDING),
    ],
)
def test_allowed(current: TaskState, target: TaskState) -> None:
    check_transition(current, target)


@pytest.mark.parametrize("current", [TaskState.SUCCESS, TaskState.FAILED])
@pytest.mark.parametrize("target", list(TaskState))
def test_terminal_states_never_change(current: TaskState, target: TaskState) -> None:
    with pytest.raises(InvalidTransitionError):
        check_transition(current, target)


def test_pending_cannot_succeed_without_running() -> None:
    assert not can_transition(TaskState.PENDING, TaskState.SUCCESS)


@given(st.lists(st.sampled_from(list(TaskState)), max_size=20))
def test_any_walk_of_allowed_steps_ends_terminal_at_most_once(steps: list[TaskState]) -> None:
    state = TaskState.PENDING
    ended = 0
    for target in steps:
        if can_transition(state, target):
            state = target
            ended += state.is_terminal()
    assert ended <= 1
    assert not (state.is_terminal() and any(can_transition(state, t) for t in TaskState))


def test_trace_ids_are_version_4_uuids() -> None:
    import uuid

    from gengate.domain.ids import new_trace_id

    ids = {new_trace_id() for _ in range(1000)}
    assert len(ids) == 1000
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
