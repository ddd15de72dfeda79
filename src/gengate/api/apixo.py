"""The APIXO dialect: `generateTask` and `statusTask`, field for field as seeds 000-002."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Scope

from gengate.api.body import optional_string, read_json_object
from gengate.api.context import ApiContext
from gengate.api.hotpath import HotRoute, query_value
from gengate.api.params import wait_seconds
from gengate.api.responses import JSONResponse, success
from gengate.api.trace import trace_id_of
from gengate.domain.errors import BadRequest
from gengate.domain.states import TaskState
from gengate.domain.task import Task

STATUS_PREFIX = "/api/v1/statusTask/"


def status_data(task: Task, ctx: ApiContext, queue_position: int | None = None) -> dict[str, Any]:
    """`data` of a status body: exactly the fields the seeds show for the state, plus `model`,
    `progress` and, while pending, `queuePosition`, which clients may ignore."""
    data: dict[str, Any] = {"taskId": task.id, "state": task.state.value}
    if task.state is TaskState.SUCCESS:
        data["resultJson"] = ctx.result_json(task)
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


class ApixoRoutes:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[Route]:
        return [
            Route("/api/v1/generateTask/{model}", self.generate_task, methods=["POST"]),
            Route("/api/v1/statusTask/{model}", self.status_task, methods=["GET"]),
            Route("/api/v1/cancelTask/{model}", self.cancel_task, methods=["POST"]),
        ]

    async def generate_task(self, request: Request) -> Response:
        ctx = self.ctx
        key = await ctx.authenticate(request.scope)
        model = request.path_params["model"]
        ctx.catalogue.get(model)
        body = await read_json_object(request, ctx.max_body_bytes)
        if "input" not in body:
            raise BadRequest("`input` is required.")
        request_type = optional_string(body, "request_type") if "request_type" in body else "async"
        if request_type is None:
            raise BadRequest("`request_type` must be a string.")
        callback_url = optional_string(body, "callback_url")
        task = await ctx.tasks.submit(
            key,
            model,
            body["input"],
            request=body,
            request_type=request_type,
            callback_url=callback_url,
            trace_id=trace_id_of(request.scope),
            idempotency_key=request.headers.get("idempotency-key"),
        )
        if request_type == "sync":
            task = await ctx.tasks.wait_until_done(task, ctx.sync_wait_s)
            return success(status_data(task, ctx))
        return success({"taskId": task.id})

    async def cancel_task(self, request: Request) -> Response:
        """A pending task ends `failed`/`CANCELED` at once, a running one once its provider
        stops; a finished one is left as it is, and the message says so."""
        ctx = self.ctx
        key = await ctx.authenticate(request.scope)
        model = request.path_params["model"]
        ctx.catalogue.get(model)
        task_id = request.query_params.get("taskId")
        if not task_id:
            raise BadRequest("The `taskId` query parameter is required.")
        task, changed = await ctx.tasks.cancel(key, task_id, model)
        if changed:
            message = "success"
        elif task.state.is_terminal():
            message = f"The task had already ended ({task.state.value}); nothing changed."
        else:
            message = "Cancel requested; the task stops when its worker does."
        return JSONResponse({"code": 200, "message": message, "data": status_data(task, ctx)})

    async def status_task(self, request: Request) -> Response:
        data = await self.status(
            request.scope,
            request.path_params["model"],
            request.query_params.get("taskId"),
            request.query_params.get("wait"),
        )
        return success(data)

    async def status(
        self, scope: Scope, model: str, task_id: str | None, wait: str | None = None
    ) -> dict[str, Any]:
        """`data` of `statusTask`; shared by the route and the hot path in front of the framework.
        With `wait=N` it answers as soon as the state or progress changes, or after N seconds."""
        ctx = self.ctx
        key = await ctx.authenticate(scope)
        ctx.catalogue.get(model)
        if not task_id:
            raise BadRequest("The `taskId` query parameter is required.")
        wait_s = wait_seconds(wait)
        task = await ctx.tasks.get(key, task_id, model)
        if wait_s > 0:
            task = await ctx.tasks.wait_for_change(task, wait_s)
        return status_data(task, ctx, await ctx.tasks.queue_position(task))

    async def hot_status(self, scope: Scope) -> dict[str, Any]:
        model = scope["path"][len(STATUS_PREFIX) :]
        query = scope["query_string"]
        return await self.status(
            scope,
            model,
            query_value(query, b"taskId"),
            query_value(query, b"wait") if b"wait=" in query else None,
        )

    def hot_routes(self) -> list[HotRoute]:
        return [HotRoute("GET", STATUS_PREFIX, self.hot_status)]
