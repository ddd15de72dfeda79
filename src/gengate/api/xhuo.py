"""The XHuo dialect: `POST /api/v1/run/{model}`, synchronous calls and seed 003's envelopes.

A run without `callback_url` waits for its task and answers the result, or an error:
the task's failure, or 504 `timeout` naming the task so the client can go on polling it
through statusTask or recordInfo. With `callback_url` it answers at once, and the task's
callback later posts `callback_envelope`. Request errors are seed 003's
`{error: {code, message}, trace_id}`, rendered by path in :mod:`gengate.api.errors`.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gengate.api.body import optional_string, read_json_object
from gengate.api.context import ApiContext
from gengate.api.responses import JSONResponse
from gengate.api.trace import trace_id_of
from gengate.domain.errors import GatewayError, Timeout
from gengate.domain.states import FailCode, TaskState
from gengate.domain.task import Task

RUN_PATH = "/api/v1/run/{model}"

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


def run_result(task: Task, ctx: ApiContext, trace_id: str | None = None) -> dict[str, Any]:
    """The success body of a run: `success`, `task_id`, `trace_id` (of the answered request;
    by default the submit request's), then the business fields `result_urls` and `cost_time`
    (ms of work)."""
    return {
        "success": True,
        "task_id": task.id,
        "trace_id": trace_id or task.trace_id,
        "result_urls": ctx.result_urls(task),
        "cost_time": task.cost_time,
    }


def callback_envelope(task: Task, ctx: ApiContext) -> dict[str, Any]:
    """Seed 003's callback: always `success`; the run result, or `error` with the failCode."""
    if task.state is TaskState.SUCCESS:
        return run_result(task, ctx)
    return {
        "success": False,
        "task_id": task.id,
        "trace_id": task.trace_id,
        "error": {"code": task.fail_code, "message": task.fail_msg},
    }


def callback_body(task: Task, ctx: ApiContext) -> bytes:
    """What a task created in this dialect posts to its `callback_url` when it ends."""
    return orjson.dumps(callback_envelope(task, ctx))


class XhuoRoutes:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[Route]:
        return [Route(RUN_PATH, self.run, methods=["POST"])]

    async def run(self, request: Request) -> Response:
        """The body is the model's input, plus an optional `callback_url` taken out of it."""
        ctx = self.ctx
        key = await ctx.authenticate(request.scope)
        model = request.path_params["model"]
        ctx.catalogue.get(model)
        body = await read_json_object(request, ctx.max_body_bytes)
        callback_url = optional_string(body, "callback_url")
        task_input = {name: value for name, value in body.items() if name != "callback_url"}
        trace_id = trace_id_of(request.scope)
        task = await ctx.tasks.submit(
            key,
            model,
            task_input,
            request=body,
            request_type="callback" if callback_url else "sync",
            callback_url=callback_url or None,
            trace_id=trace_id,
            dialect="xhuo",
            idempotency_key=request.headers.get("idempotency-key"),
        )
        if callback_url:
            return JSONResponse({"success": True, "task_id": task.id, "trace_id": trace_id})
        task = await ctx.tasks.wait_until_done(task, ctx.sync_wait_s)
        if task.state is TaskState.SUCCESS:
            return JSONResponse(run_result(task, ctx, trace_id))
        if task.state is TaskState.FAILED:
            raise TaskFailed(task)
        raise Timeout(
            f"The task did not finish within {ctx.sync_wait_s:g} s; poll it with "
            "statusTask or recordInfo, or pass `callback_url`.",
            extra={"task_id": task.id},
        )
