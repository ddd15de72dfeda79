"""The APIXO routes: `generateTask`, `statusTask`, `cancelTask`; bodies in :mod:`gengate.dialects.apixo`."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope

from gengate.api.body import optional_string, receive_json_object
from gengate.api.hotpath import HotRoute, header_value, query_value
from gengate.api.openapi_parts import (
    TASK_ID_QUERY,
    WAIT_PARAM,
    DocSpec,
    Fragment,
    envelope,
    enveloped,
    errors,
    ok,
    operation,
    ref,
)
from gengate.api.params import wait_seconds
from gengate.api.responses import JSONResponse, success
from gengate.api.routing import ApiRoutes, route
from gengate.api.trace import trace_id_of
from gengate.dialects.apixo import status_data
from gengate.domain.errors import BadRequest
from gengate.domain.states import FailCode, TaskState
from gengate.domain.task import Task
from gengate.services.longpoll import LongPoll, settled

STATUS_PREFIX = "/api/v1/statusTask/"
GENERATE_PREFIX = "/api/v1/generateTask/"


class ApixoRoutes(ApiRoutes):
    @route("/api/v1/generateTask/{model}", "POST")
    async def generate_task(self, request: Request) -> Response:
        return success(await self.generate(request.scope, request.receive, request.path_params["model"]))

    async def generate(self, scope: Scope, receive: Receive, model: str) -> dict[str, Any]:
        """`data` of `generateTask`; shared by the route and the hot path in front of the framework."""
        ctx = self.ctx
        key = await ctx.authenticate(scope)
        ctx.catalogue.get(model)
        body = await receive_json_object(receive, ctx.max_body_bytes)
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
            trace_id=trace_id_of(scope),
            idempotency_key=header_value(scope, b"idempotency-key"),
        )
        if request_type == "sync":
            task = await ctx.tasks.wait_until_done(task, ctx.sync_wait_s)
            return status_data(task, ctx.links)
        return {"taskId": task.id}

    async def hot_generate(self, scope: Scope, receive: Receive) -> dict[str, Any]:
        return await self.generate(scope, receive, scope["path"][len(GENERATE_PREFIX) :])

    @route("/api/v1/cancelTask/{model}", "POST")
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
        return JSONResponse({"code": 200, "message": message, "data": status_data(task, ctx.links)})

    @route("/api/v1/statusTask/{model}", "GET")
    async def status_task(self, request: Request) -> Response:
        data = await self.status(
            request.scope,
            request.path_params["model"],
            request.query_params.get("taskId"),
            request.query_params.get("wait"),
        )
        return success(await settled(data))

    async def status(
        self, scope: Scope, model: str, task_id: str | None, wait: str | None = None
    ) -> dict[str, Any] | LongPoll:
        """`data` of `statusTask`; shared by the route and the hot path in front of the framework.
        With `wait=N`, a long-poll that answers as soon as the state or progress changes, or
        after N seconds (:mod:`gengate.services.longpoll`)."""
        ctx = self.ctx
        key = await ctx.authenticate(scope)
        ctx.catalogue.get(model)
        if not task_id:
            raise BadRequest("The `taskId` query parameter is required.")
        found = await ctx.tasks.poll(key, task_id, model, wait_seconds(wait))
        if isinstance(found, LongPoll):
            return found.answered_with(self.status_view, position=True)
        return self.status_view(found, await ctx.tasks.queue_position(found))

    def status_view(self, task: Task, queue_position: int | None) -> dict[str, Any]:
        return status_data(task, self.ctx.links, queue_position)

    async def hot_status(self, scope: Scope) -> dict[str, Any] | LongPoll:
        model = scope["path"][len(STATUS_PREFIX) :]
        query = scope["query_string"]
        return await self.status(
            scope,
            model,
            query_value(query, b"taskId"),
            query_value(query, b"wait") if b"wait=" in query else None,
        )

    def hot_routes(self) -> list[HotRoute]:
        return [
            HotRoute("GET", STATUS_PREFIX, self.hot_status),
            HotRoute("POST", GENERATE_PREFIX, self.hot_generate, body=True),
        ]


TASK_STATUS = {
    "type": "object",
    "required": ["taskId", "state", "createTime"],
    "properties": {
        "taskId": {"type": "string", "example": "task_3q2Xb7kPz1YwLm9vN0aR4t"},
        "state": {"type": "string", "enum": [s.value for s in TaskState]},
        "resultJson": {"type": "string", "description": 'On success: a JSON string `{"resultUrls": [...]}`.'},
        "costTime": {"type": "integer", "description": "On success: ms of work."},
        "failCode": {"type": "string", "description": "On failure.", "examples": [c.value for c in FailCode]},
        "failMsg": {"type": "string", "description": "On failure."},
        "createTime": {"type": "integer", "description": "Unix ms."},
        "completeTime": {"type": "integer", "description": "Unix ms; on success and failure."},
        "model": {"type": "string"},
        "progress": {"type": "integer", "minimum": 0, "maximum": 100},
        "queuePosition": {"type": "integer", "description": "While pending: tasks of the model ahead."},
    },
}


def openapi(spec: DocSpec) -> Fragment:
    """`generateTask`, `statusTask` and `cancelTask`, with the status body they share."""
    status = enveloped(ref("TaskStatus"))
    paths = {
        "/api/v1/generateTask/{model}": {
            "post": operation(
                "Submit a generation task",
                ok(
                    {
                        # A status also has a taskId: the two may both match.
                        "anyOf": [
                            envelope({"type": "object", "properties": {"taskId": {"type": "string"}}}),
                            envelope(ref("TaskStatus")),
                        ]
                    }
                )
                | errors(400, 401, 403, 404, 409, 413, 500, 503),
                description="`async` answers the task id at once; "
                "`sync` waits (bounded) and answers the status.",
                parameters=[spec.model_param()],
                body=ref("GenerateTaskRequest"),
            )
        },
        "/api/v1/statusTask/{model}": {
            "get": operation(
                "Query a task's state and results",
                status | errors(400, 401, 403, 404, 500, 503),
                parameters=[spec.model_param(), TASK_ID_QUERY, WAIT_PARAM],
            )
        },
        "/api/v1/cancelTask/{model}": {
            "post": operation(
                "Cancel a task: pending ends at once, running stops, finished stays",
                status | errors(400, 401, 403, 404, 503),
                parameters=[spec.model_param(), TASK_ID_QUERY],
            )
        },
    }
    generate_request = {
        "type": "object",
        "required": ["input"],
        "properties": {
            "request_type": {"type": "string", "enum": ["async", "sync", "callback"], "default": "async"},
            "callback_url": {
                "type": "string",
                "format": "uri",
                "description": "Receives the status response, signed per Standard Webhooks, "
                "when the task ends.",
            },
            "input": {"oneOf": spec.input_refs()},
        },
    }
    return Fragment(paths, {"TaskStatus": TASK_STATUS, "GenerateTaskRequest": generate_request})
