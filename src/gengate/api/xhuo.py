"""The XHuo routes: `POST /api/v1/run/{model}`, synchronous calls and seed 003's envelopes.

A run without `callback_url` waits for its task and answers the result, or an error:
the task's failure, or 504 `timeout` naming the task so the client can go on polling it
through statusTask or recordInfo. With `callback_url` it answers at once, and the task's
callback later posts `callback_envelope`. Request errors are seed 003's
`{error: {code, message}, trace_id}`, rendered by path in :mod:`gengate.api.errors`. The
bodies and `TaskFailed` are :mod:`gengate.dialects.xhuo`'s.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gengate.api.body import optional_string, read_json_object
from gengate.api.openapi_parts import ERROR, DocSpec, Fragment, errors, ok, operation, ref
from gengate.api.responses import JSONResponse
from gengate.api.routing import ApiRoutes, route
from gengate.api.trace import trace_id_of
from gengate.dialects.xhuo import TaskFailed, accepted, run_result
from gengate.domain.dialect import Dialect
from gengate.domain.errors import Timeout
from gengate.domain.states import FailCode, TaskState

RUN_PATH = "/api/v1/run/{model}"


class XhuoRoutes(ApiRoutes):
    @route(RUN_PATH, "POST")
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
            dialect=Dialect.XHUO,
            idempotency_key=request.headers.get("idempotency-key"),
        )
        if callback_url:
            return JSONResponse(accepted(task.id, trace_id))
        task = await ctx.tasks.wait_until_done(task, ctx.sync_wait_s)
        if task.state is TaskState.SUCCESS:
            return JSONResponse(run_result(task, ctx.links, trace_id))
        if task.state is TaskState.FAILED:
            raise TaskFailed(task)
        raise Timeout(
            f"The task did not finish within {ctx.sync_wait_s:g} s; poll it with "
            "statusTask or recordInfo, or pass `callback_url`.",
            extra={"task_id": task.id},
        )


XHUO_ERROR = {
    "type": "object",
    "required": ["error", "trace_id"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {
                    "type": "string",
                    "enum": [
                        *ERROR["properties"]["error"]["properties"]["code"]["enum"],
                        *(c.value for c in FailCode),
                    ],
                    "description": "A gateway error code, or the failCode of a run whose task failed.",
                },
                "message": {"type": "string"},
            },
        },
        "trace_id": {"type": "string", "format": "uuid"},
        "task_id": {
            "type": "string",
            "description": "On 504 `timeout` and on a failed task: the task, to poll or look up.",
        },
    },
}

XHUO_RESULT = {
    "type": "object",
    "required": ["success", "task_id", "trace_id"],
    "properties": {
        "success": {"type": "boolean", "const": True},
        "task_id": {"type": "string"},
        "trace_id": {"type": "string", "format": "uuid", "description": "Of the submit request."},
        "result_urls": {
            "type": "array",
            "items": {"type": "string", "format": "uri"},
            "description": "Signed, expiring; absent from the answer to a run with `callback_url`.",
        },
        "cost_time": {"type": ["integer", "null"], "description": "ms of work."},
    },
}


def openapi(spec: DocSpec) -> Fragment:
    """`run`, whose body is the model's input itself with `callback_url` beside its fields."""
    schemas: dict[str, Any] = {"XhuoError": XHUO_ERROR, "XhuoRunResult": XHUO_RESULT}
    for name in spec.input_names:
        schema = spec.schemas[name]
        schemas["Run" + name] = {
            **schema,
            "title": "Run" + name,
            "properties": {
                **schema["properties"],
                "callback_url": {
                    "type": "string",
                    "format": "uri",
                    "description": "Answer at once; POST seed 003's callback envelope here when "
                    "the task ends.",
                },
            },
        }
    paths = {
        "/api/v1/run/{model}": {
            "post": operation(
                "Run a model and wait for its result (XHuo dialect)",
                ok(ref("XhuoRunResult"))
                | errors(400, 401, 403, 404, 409, 413, 500, 503, 504, schema="XhuoError"),
                description="Without `callback_url` it waits (bounded) and answers the result; "
                "a failed task answers its failCode as `error.code` (HTTP 403 CONTENT_VIOLATION, "
                "400 INVALID_INPUT, 504 TIMEOUT, 409 CANCELED, 500 otherwise), and a task still "
                "running at the wait limit answers 504 `timeout` with `task_id`. With "
                "`callback_url` it answers `{success, task_id, trace_id}` at once.",
                parameters=[spec.model_param()],
                body={"oneOf": [ref("Run" + name) for name in spec.input_names]},
            )
        },
    }
    return Fragment(paths, schemas)
