"""The KIE jobs dialect: `createTask` and `recordInfo`, field for field as DESIGN.md and seed 004.

KIE clients read every field of a record whatever the state, so `record_data` always
writes all of them (`null` when unknown), folds pending and processing into `waiting`
and failed (canceled included) into `fail`, and echoes the create request in `param`.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Scope

from gengate.api.body import optional_string, read_json_object
from gengate.api.context import ApiContext
from gengate.api.errors import Dialect
from gengate.api.hotpath import HotRoute, query_value
from gengate.api.params import wait_seconds
from gengate.api.responses import success
from gengate.api.trace import trace_id_of
from gengate.domain.errors import BadRequest
from gengate.domain.states import TaskState
from gengate.domain.task import Task

CREATE_PATH = "/api/v1/jobs/createTask"
RECORD_PATH = "/api/v1/jobs/recordInfo"

_KIE_STATES = {
    TaskState.PENDING: "waiting",
    TaskState.PROCESSING: "waiting",
    TaskState.SUCCESS: "success",
    TaskState.FAILED: "fail",
}


def kie_state(state: TaskState) -> str:
    """`waiting` for pending and processing, `success`, `fail` for failed and canceled."""
    return _KIE_STATES[state]


def record_data(task: Task, ctx: ApiContext) -> dict[str, Any]:
    """`data` of a recordInfo body: every seed 004 field, `null` when unknown, plus `progress`.

    `costTime` is given on success only and `completeTime` on success and failure, as the
    APIXO view gives them, so both views of one task agree.
    """
    succeeded = task.state is TaskState.SUCCESS
    failed = task.state is TaskState.FAILED
    return {
        "taskId": task.id,
        "model": task.model,
        "state": _KIE_STATES[task.state],
        "param": task.request_json,
        "resultJson": ctx.result_json(task) if succeeded else None,
        "failCode": task.fail_code if failed else None,
        "failMsg": task.fail_msg if failed else None,
        "costTime": task.cost_time if succeeded else None,
        "completeTime": task.complete_time if task.state.is_terminal() else None,
        "createTime": task.create_time,
        "progress": task.progress,
    }


def record_body(task: Task, ctx: ApiContext) -> bytes:
    """The whole recordInfo response; also the callback body of a task created in this dialect."""
    return orjson.dumps({"code": 200, "msg": "success", "data": record_data(task, ctx)})


class KieRoutes:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[Route]:
        return [
            Route(CREATE_PATH, self.create_task, methods=["POST"]),
            Route(RECORD_PATH, self.record_info, methods=["GET"]),
        ]

    async def create_task(self, request: Request) -> Response:
        """`{model, callBackUrl?, input}`; the whole body is kept as the task's `param`."""
        ctx = self.ctx
        key = await ctx.authenticate(request.scope)
        body = await read_json_object(request, ctx.max_body_bytes)
        model = optional_string(body, "model")
        if model is None:
            raise BadRequest("`model` is required.")
        ctx.catalogue.get(model)
        if "input" not in body:
            raise BadRequest("`input` is required.")
        callback_url = optional_string(body, "callBackUrl")
        task = await ctx.tasks.submit(
            key,
            model,
            body["input"],
            request=body,
            request_type="callback" if callback_url else "async",
            callback_url=callback_url or None,
            trace_id=trace_id_of(request.scope),
            dialect="kie",
            idempotency_key=request.headers.get("idempotency-key"),
        )
        return success({"taskId": task.id}, message_field="msg")

    async def record_info(self, request: Request) -> Response:
        query = request.query_params
        data = await self.record(request.scope, query.get("taskId"), query.get("wait"))
        return success(data, message_field="msg")

    async def record(self, scope: Scope, task_id: str | None, wait: str | None) -> dict[str, Any]:
        """`data` of `recordInfo`; shared by the route and the hot path in front of the framework."""
        ctx = self.ctx
        key = await ctx.authenticate(scope)
        if not task_id:
            raise BadRequest("The `taskId` query parameter is required.")
        wait_s = wait_seconds(wait)
        task = await ctx.tasks.get(key, task_id)
        if wait_s > 0:
            task = await ctx.tasks.wait_for_change(task, wait_s)
        return record_data(task, ctx)

    async def hot_record(self, scope: Scope) -> dict[str, Any]:
        query = scope["query_string"]
        return await self.record(
            scope,
            query_value(query, b"taskId"),
            query_value(query, b"wait") if b"wait=" in query else None,
        )

    def hot_routes(self) -> list[HotRoute]:
        return [HotRoute("GET", RECORD_PATH, self.hot_record, Dialect.KIE, "msg", exact=True)]
