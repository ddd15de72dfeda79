"""The XHuo dialect: seed 003's run results, callback envelopes and errors.

XHuo has no status body of its own: a run answers its result or an error, and a task
created here is polled through statusTask or recordInfo. A failed task reads as an error
whose `error.code` is its failCode (`TaskFailed`), with the HTTP status `FAIL_STATUS` gives.
"""

from __future__ import annotations

from typing import Any

import orjson

from gengate.dialects.links import Links
from gengate.domain.errors import GatewayError
from gengate.domain.states import FailCode, TaskState
from gengate.domain.task import Task

#: No `{code, message, data}` envelope: a run answers `success` and the business fields.
MESSAGE_FIELD: str | None = None

#: HTTP status of a synchronous run whose task failed, by failCode; any other code is 500.
#: They follow seed 003's guidance: 403 moderation (do not retry), 400 bad input (fix it),
#: 504 too slow (retry later or go async), 409 canceled by its owner (a retry would redo
#: what was canceled), 500 a transient fault of the worker or the provider (retry once).
FAIL_STATUS: dict[str, int] = {
    FailCode.CONTENT_VIOLATION: 403,
    FailCode.INVALID_INPUT: 400,
    FailCode.TIMEOUT: 504,
    FailCode.CANCELED: 409,
}


class TaskFailed(GatewayError):
    """A synchronous run whose task failed: `error.code` is the task's `failCode` (the same
    string statusTask, recordInfo and the failure callback show), `error.message` its
    `failMsg`, and `task_id` sits beside `error`."""

    def __init__(self, task: Task) -> None:
        fail_code = task.fail_code or FailCode.INTERNAL_ERROR.value
        super().__init__(
            task.fail_msg or f"The task failed ({fail_code}).",
            status=FAIL_STATUS.get(fail_code, 500),
            extra={"task_id": task.id},
        )
        self.code = fail_code  # type: ignore[misc]


def run_result(task: Task, links: Links, trace_id: str | None = None) -> dict[str, Any]:
    """The success body of a run: `success`, `task_id`, `trace_id` (of the answered request;
    by default the submit request's), then the business fields `result_urls` and `cost_time`
    (ms of work), and `output` with the plain output values of a model that made any."""
    body = {
        "success": True,
        "task_id": task.id,
        "trace_id": trace_id or task.trace_id,
        "result_urls": links.result_urls(task),
        "cost_time": task.cost_time,
    }
    if task.output_json is not None:
        body["output"] = orjson.loads(task.output_json)
    return body


def accepted(task_id: str, trace_id: str) -> dict[str, Any]:
    """The answer to a run with `callback_url`: the task is taken, the result comes later."""
    return {"success": True, "task_id": task_id, "trace_id": trace_id}


def callback_envelope(task: Task, links: Links) -> dict[str, Any]:
    """Seed 003's callback: always `success`; the run result, or `error` with the failCode."""
    if task.state is TaskState.SUCCESS:
        return run_result(task, links)
    return {
        "success": False,
        "task_id": task.id,
        "trace_id": task.trace_id,
        "error": {"code": task.fail_code, "message": task.fail_msg},
    }


def callback_body(task: Task, links: Links) -> bytes:
    """What a task created in this dialect posts to its `callback_url` when it ends."""
    return orjson.dumps(callback_envelope(task, links))


def error_envelope(error: GatewayError, trace_id: str) -> dict[str, Any]:
    """Only `error` and `trace_id` (plus what the error adds beside them, such as `task_id`)."""
    return {"error": {"code": error.code, "message": error.message}, "trace_id": trace_id, **error.extra}
