"""The KIE jobs routes: `createTask` and `recordInfo`, as DESIGN.md and seed 004.

The bodies (every field of a record whatever the state, KIE's state names) are drawn by
:mod:`gengate.dialects.kie`; this module reads requests and calls the task service.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope

from gengate.api.body import optional_string, receive_json_object
from gengate.api.hotpath import HotRoute, header_value, query_value
from gengate.api.openapi_parts import (
    ERROR,
    TASK_ID_QUERY,
    WAIT_PARAM,
    DocSpec,
    Fragment,
    enveloped,
    errors,
    nullable,
    ok_data,
    operation,
    ref,
)
from gengate.api.params import wait_seconds
from gengate.api.responses import success
from gengate.api.routing import ApiRoutes, route
from gengate.api.trace import trace_id_of
from gengate.dialects.kie import MESSAGE_FIELD, record_data
from gengate.domain.dialect import Dialect
from gengate.domain.errors import BadRequest
from gengate.domain.states import FailCode
from gengate.domain.task import Task
from gengate.services.longpoll import LongPoll, settled

CREATE_PATH = "/api/v1/jobs/createTask"
RECORD_PATH = "/api/v1/jobs/recordInfo"


class KieRoutes(ApiRoutes):
    @route(CREATE_PATH, "POST")
    async def create_task(self, request: Request) -> Response:
        return success(await self.create(request.scope, request.receive), message_field=MESSAGE_FIELD)

    async def create(self, scope: Scope, receive: Receive) -> dict[str, Any]:
        """`data` of `createTask`, `{model, callBackUrl?, input}`, the whole body kept as the
        task's `param`; shared by the route and the hot path in front of the framework."""
        ctx = self.ctx
        key = await ctx.authenticate(scope)
        body = await receive_json_object(receive, ctx.max_body_bytes)
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
            trace_id=trace_id_of(scope),
            dialect=Dialect.KIE,
            idempotency_key=header_value(scope, b"idempotency-key"),
        )
        return {"taskId": task.id}

    @route(RECORD_PATH, "GET")
    async def record_info(self, request: Request) -> Response:
        query = request.query_params
        data = await self.record(request.scope, query.get("taskId"), query.get("wait"))
        return success(await settled(data), message_field=MESSAGE_FIELD)

    async def record(self, scope: Scope, task_id: str | None, wait: str | None) -> dict[str, Any] | LongPoll:
        """`data` of `recordInfo`; shared by the route and the hot path in front of the framework.
        With `wait=N`, a long-poll (:mod:`gengate.services.longpoll`)."""
        ctx = self.ctx
        key = await ctx.authenticate(scope)
        if not task_id:
            raise BadRequest("The `taskId` query parameter is required.")
        found = await ctx.tasks.poll(key, task_id, None, wait_seconds(wait))
        if isinstance(found, LongPoll):
            return found.answered_with(self.record_view)
        return self.record_view(found, None)

    def record_view(self, task: Task, _queue_position: int | None) -> dict[str, Any]:
        return record_data(task, self.ctx.links)

    async def hot_record(self, scope: Scope) -> dict[str, Any] | LongPoll:
        query = scope["query_string"]
        return await self.record(
            scope,
            query_value(query, b"taskId"),
            query_value(query, b"wait") if b"wait=" in query else None,
        )

    def hot_routes(self) -> list[HotRoute]:
        return [
            HotRoute("GET", RECORD_PATH, self.hot_record, Dialect.KIE, exact=True),
            HotRoute("POST", CREATE_PATH, self.create, Dialect.KIE, exact=True, body=True),
        ]


KIE_ERROR = {
    **ERROR,
    "required": ["code", "msg", "data", "error", "trace_id"],
    "properties": {
        "msg" if name == "message" else name: schema for name, schema in ERROR["properties"].items()
    },
}

KIE_RECORD = {
    "type": "object",
    "required": [
        "taskId",
        "model",
        "state",
        "param",
        "resultJson",
        "failCode",
        "failMsg",
        "costTime",
        "completeTime",
        "createTime",
    ],
    "properties": {
        "taskId": {"type": "string"},
        "model": {"type": "string"},
        "state": {
            "type": "string",
            "enum": ["waiting", "success", "fail"],
            "description": "`waiting`: pending or processing; `fail`: failed or canceled.",
        },
        "param": {"type": "string", "description": "The original create request as a JSON string."},
        "resultJson": nullable("string", 'On success: a JSON string `{"resultUrls": [...]}`.'),
        "failCode": {**nullable("string", "On failure."), "examples": [c.value for c in FailCode]},
        "failMsg": nullable("string", "On failure."),
        "costTime": nullable("integer", "On success: ms of work."),
        "completeTime": nullable("integer", "Unix ms; on success and failure."),
        "createTime": {"type": "integer", "description": "Unix ms."},
        "progress": nullable("integer", "0-100 while known."),
    },
}


def openapi(spec: DocSpec) -> Fragment:
    """`createTask` and `recordInfo`, with their `msg` envelopes."""
    paths = {
        "/api/v1/jobs/createTask": {
            "post": operation(
                "Submit a generation task (KIE jobs dialect)",
                ok_data({"taskId": {"type": "string"}}, MESSAGE_FIELD)
                | errors(400, 401, 403, 404, 409, 413, 500, 503, schema="KieError"),
                body=ref("KieCreateTaskRequest"),
            )
        },
        "/api/v1/jobs/recordInfo": {
            "get": operation(
                "Query a task, every field present (KIE jobs dialect)",
                enveloped(ref("KieRecord"), MESSAGE_FIELD)
                | errors(400, 401, 403, 404, 500, 503, schema="KieError"),
                parameters=[TASK_ID_QUERY, WAIT_PARAM],
            )
        },
    }
    create_request = {
        "type": "object",
        "required": ["model", "input"],
        "properties": {
            "model": {"type": "string", "enum": spec.model_ids},
            "callBackUrl": {
                "type": "string",
                "format": "uri",
                "description": "Receives the recordInfo response, signed per Standard Webhooks, "
                "when the task ends.",
            },
            "input": {"oneOf": spec.input_refs()},
        },
    }
    return Fragment(
        paths, {"KieRecord": KIE_RECORD, "KieError": KIE_ERROR, "KieCreateTaskRequest": create_request}
    )
