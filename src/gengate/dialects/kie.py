"""The KIE jobs dialect: `recordInfo` bodies, callbacks and errors, field for field as seed 004.

KIE clients read every field of a record whatever the state, so `record_data` always
writes all of them (`null` when unknown), folds pending and processing into `waiting`
and failed (canceled included) into `fail`, and echoes the create request in `param`.
The same state names are read back by the KIE relay (`STATES_BY_NAME`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gengate.dialects import apixo
from gengate.dialects.links import Links
from gengate.domain.errors import GatewayError
from gengate.domain.states import TaskState
from gengate.domain.task import Task

MESSAGE_FIELD = "msg"

#: Our states by their KIE names: `waiting` for pending and processing, `fail` for failed.
STATE_NAMES: Mapping[TaskState, str] = {
    TaskState.PENDING: "waiting",
    TaskState.PROCESSING: "waiting",
    TaskState.SUCCESS: "success",
    TaskState.FAILED: "fail",
}

#: A KIE state read back as ours (an upstream `waiting` task is running as far as we know).
STATES_BY_NAME: Mapping[str, TaskState] = {
    "waiting": TaskState.PROCESSING,
    "success": TaskState.SUCCESS,
    "fail": TaskState.FAILED,
}


def state_name(state: TaskState) -> str:
    """`waiting` for pending and processing, `success`, `fail` for failed and canceled."""
    return STATE_NAMES[state]


def record_data(task: Task, links: Links) -> dict[str, Any]:
    """`data` of a recordInfo body: every seed 004 field, `null` when unknown, plus `progress`.

    `costTime` is given on success only and `completeTime` on success and failure, as the
    APIXO view gives them, so both views of one task agree.
    """
    succeeded = task.state is TaskState.SUCCESS
    failed = task.state is TaskState.FAILED
    return {
        "taskId": task.id,
        "model": task.model,
        "state": STATE_NAMES[task.state],
        "param": task.request_json,
        "resultJson": links.result_json(task) if succeeded else None,
        "failCode": task.fail_code if failed else None,
        "failMsg": task.fail_msg if failed else None,
        "costTime": task.cost_time if succeeded else None,
        "completeTime": task.complete_time if task.state.is_terminal() else None,
        "createTime": task.create_time,
        "progress": task.progress,
    }


def callback_body(task: Task, links: Links) -> bytes:
    """The whole recordInfo response: also the callback body of a task created in this dialect."""
    return orjson.dumps({"code": 200, "msg": "success", "data": record_data(task, links)})


def error_envelope(error: GatewayError, trace_id: str) -> dict[str, Any]:
    """The APIXO error envelope, saying `msg` where APIXO says `message`."""
    return apixo.error_envelope(error, trace_id, MESSAGE_FIELD)
