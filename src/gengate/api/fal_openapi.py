"""The OpenAPI fragment of the fal queue routes (:mod:`gengate.api.fal`): paths, bodies, errors."""

from __future__ import annotations

from typing import Any

from gengate.api.fal import MAX_REQUEST_TIMEOUT_S, PREFIX
from gengate.api.openapi_parts import DocSpec, Fragment, errors, operation, ref
from gengate.dialects.fal import PRIORITIES

FAL_URLS = {
    name: {"type": "string", "format": "uri"} for name in ("response_url", "status_url", "cancel_url")
}
FAL_SCHEMAS: dict[str, Any] = {
    "FalQueued": {
        "type": "object",
        "required": ["status", "request_id", *FAL_URLS, "queue_position"],
        "properties": {
            "status": {"type": "string", "enum": ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]},
            "request_id": {"type": "string"},
            **FAL_URLS,
            "queue_position": {"type": "integer", "minimum": 0},
        },
    },
    "FalStatus": {
        "type": "object",
        "required": ["status", "request_id", "logs"],
        "properties": {
            "status": {"type": "string", "enum": ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]},
            "request_id": {"type": "string"},
            **FAL_URLS,
            "logs": {
                "type": ["array", "null"],
                "description": "The run's log lines with `logs=1`; null without.",
                "items": {
                    "type": "object",
                    "required": ["message", "level", "source", "timestamp"],
                    "properties": {
                        "message": {"type": "string"},
                        "level": {"type": "string"},
                        "source": {"type": "string"},
                        "timestamp": {"type": "string", "format": "date-time"},
                    },
                },
            },
            "queue_position": {"type": "integer", "minimum": 0, "description": "While IN_QUEUE."},
            "metrics": {
                "type": "object",
                "properties": {"inference_time": {"type": ["number", "null"], "description": "Seconds."}},
            },
            "error": {"type": ["string", "null"], "description": "When it failed: the failMsg."},
            "error_type": {"type": ["string", "null"], "description": "When it failed: the failCode."},
        },
    },
    "FalResult": {
        "type": "object",
        "description": "`images` when every file is an image, `video`, or `files`; `seed` when the "
        "input fixed one; the model's plain output values beside them.",
        "properties": {
            "images": {"type": "array", "items": {"type": "object"}},
            "video": {"type": "object"},
            "files": {"type": "array", "items": {"type": "object"}},
            "seed": {"type": "integer"},
        },
    },
    "FalError": {
        "type": "object",
        "required": ["detail", "error_type", "error", "trace_id"],
        "properties": {
            "detail": {"type": "string"},
            "error_type": {
                "type": "string",
                "description": "The error code, or a failed request's failCode.",
            },
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            },
            "trace_id": {"type": "string"},
            "request_id": {"type": "string"},
            "status": {"type": "string", "description": "`IN_QUEUE`, `IN_PROGRESS` or `ALREADY_COMPLETED`."},
        },
    },
}


def openapi(spec: DocSpec) -> Fragment:
    """Submit, status (and its stream), result and cancel, with fal's bodies and errors."""
    app: list[dict[str, Any]] = [
        {
            "name": "owner",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "example": "gengate"},
            "description": "The model owner (default `gengate`), or a model id's first segment.",
        },
        {
            "name": "alias",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "example": next(iter(spec.model_ids), "demo-image")},
        },
    ]
    by_id = [*app, {"name": "request_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    logs: dict[str, Any] = {
        "name": "logs",
        "in": "query",
        "schema": {"type": "string", "enum": ["0", "1", "false", "true"]},
    }
    submit_parameters = [
        *app,
        {"name": "fal_webhook", "in": "query", "schema": {"type": "string", "format": "uri"}},
        {
            "name": "X-Fal-Queue-Priority",
            "in": "header",
            "schema": {"type": "string", "enum": list(PRIORITIES)},
        },
        {
            "name": "X-Fal-Request-Timeout",
            "in": "header",
            "schema": {"type": "number", "exclusiveMinimum": 1, "maximum": MAX_REQUEST_TIMEOUT_S},
            "description": "Seconds a request may wait in the queue before it is canceled.",
        },
    ]

    def fal_ok(schema: str, status: str = "200") -> dict[str, Any]:
        return {status: {"description": "Success", "content": {"application/json": {"schema": ref(schema)}}}}

    def fal_errors(*statuses: int) -> dict[str, Any]:
        """fal's error bodies, 429 among them (the rate limit answers in the route's dialect)."""
        return errors(*sorted({*statuses, 429}), schema="FalError")

    request = PREFIX + "/{owner}/{alias}/requests/{request_id}"
    paths = {
        PREFIX + "/{owner}/{alias}": {
            "post": operation(
                "Submit a request to a model's queue (fal)",
                fal_ok("FalQueued") | fal_errors(400, 401, 403, 404, 409, 413, 503),
                description="The body is the model's input. `Authorization: Key <key>` (fal-client) or "
                "Bearer. A sub-path after the app names a mode (`/fal/gengate/demo-image/text-to-image`).",
                parameters=submit_parameters,
                body={"oneOf": spec.input_refs()},
            )
        },
        PREFIX + "/{owner}/{alias}/{path}": {
            "post": operation(
                "Submit a request to a model's sub-path: a mode, or a model `owner/alias/path` (fal)",
                fal_ok("FalQueued") | fal_errors(400, 401, 403, 404, 409, 413, 503),
                description="As the submit without a sub-path; `path` names a mode of the app's model "
                "(`text-to-image`) or, where one exists, the model whose id is `owner/alias/path`.",
                parameters=[
                    *submit_parameters,
                    {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}},
                ],
                body={"oneOf": spec.input_refs()},
            )
        },
        request + "/status": {
            "get": operation(
                "A request's status, with its log lines on `logs=1` (fal)",
                fal_ok("FalStatus") | fal_errors(400, 401, 403, 404),
                parameters=[*by_id, logs],
            )
        },
        request + "/status/stream": {
            "get": operation(
                "Server-Sent Events: the status at each change, until COMPLETED (fal)",
                {"200": {"description": "An event stream", "content": {"text/event-stream": {}}}}
                | fal_errors(400, 401, 403, 404),
                parameters=[*by_id, logs],
            )
        },
        request: {
            "get": operation(
                "A completed request's result (fal)",
                fal_ok("FalResult") | fal_errors(400, 401, 403, 404, 422, 500, 504),
                description="400 while it is not completed; a failed request answers its failCode as "
                "`error_type` (422 CONTENT_VIOLATION or INVALID_INPUT, 504 TIMEOUT, 400 CANCELED, 500 "
                "otherwise).",
                parameters=by_id,
            )
        },
        request + "/cancel": {
            "put": operation(
                "Cancel a request (fal)",
                {
                    "202": {
                        "description": "Cancellation requested",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "status": {"type": "string", "const": "CANCELLATION_REQUESTED"}
                                    },
                                }
                            }
                        },
                    }
                }
                | fal_errors(400, 401, 403, 404),
                parameters=by_id,
            )
        },
    }
    return Fragment(paths, FAL_SCHEMAS)
