"""The APIXO dialect: status bodies, callbacks and errors, field for field as seeds 000-002."""

from __future__ import annotations

from typing import Any

import orjson

from gengate.dialects.links import Links
from gengate.domain.errors import GatewayError
from gengate.domain.states import TaskState
from gengate.domain.task import Task

MESSAGE_FIELD = "message"


def state_name(state: TaskState) -> str:
    """APIXO names our states as they are: `pending`, `processing`, `success`, `failed`."""
    return state.value


def status_data(task: Task, links: Links, queue_position: int | None = None) -> dict[str, Any]:
    """`data` of a status body: exactly the fields the seeds show for the state, plus `model`,
    `progress` and, while pending, `queuePosition`, which clients may ignore."""
    data: dict[str, Any] = {"taskId": task.id, "state": task.state.value}
    if task.state is TaskState.SUCCESS:
        data["resultJson"] = links.result_json(task)
        data["costTime"] = task.cost_time
    elif task.state is TaskState.FAILED:
        data["failCode"] = task.fail_code
        data["failMsg"] = task.fail_msg
    data["createTime"] = task.create_time
    if task.state.is_terminal():
        data["completeTime"] = task.complete_time
    data["model"] = task.model
    if task.progress is not None:
        data["progress"] = task.progress
    if queue_position is not None:
        data["queuePosition"] = queue_position
    return data


def callback_body(task: Task, links: Links) -> bytes:
    """Exactly the task's status response."""
    return orjson.dumps({"code": 200, "message": "success", "data": status_data(task, links)})


def error_envelope(error: GatewayError, trace_id: str, message_field: str = MESSAGE_FIELD) -> dict[str, Any]:
    """`{code, message, data: null, error: {code, message}, trace_id}`; `code` is the HTTP status.
    A dialect with the same envelope under another `message_field` (KIE's `msg`) reuses it."""
    return {
        "code": error.status,
        message_field: error.message,
        "data": None,
        "error": {"code": error.code, "message": error.message},
        "trace_id": trace_id,
        **error.extra,
    }
