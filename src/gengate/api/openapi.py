"""The OpenAPI document, built from the same msgspec structs that validate requests."""

from __future__ import annotations

from typing import Any

import msgspec

from gengate.api.admin import CreateKeyBody, UpdateKeyBody
from gengate.domain.catalogue import Catalogue
from gengate.domain.errors import GatewayError
from gengate.domain.states import FailCode, TaskState

REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


def _envelope(data: dict[str, Any], message_field: str = "message") -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["code", message_field, "data"],
        "properties": {
            "code": {"type": "integer", "example": 200},
            message_field: {"type": "string"},
            "data": data,
        },
    }


_TASK_STATUS = {
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


def _all_errors() -> list[type[GatewayError]]:
    found: list[type[GatewayError]] = []
    pending = [GatewayError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


_ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["code", "message", "data", "error", "trace_id"],
    "properties": {
        "code": {"type": "integer"},
        "message": {"type": "string"},
        "data": {"type": "null"},
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "enum": sorted({c.code for c in _all_errors()})},
                "message": {"type": "string"},
            },
        },
        "trace_id": {"type": "string", "format": "uuid"},
    },
}


_KIE_ERROR = {
    **_ERROR,
    "required": ["code", "msg", "data", "error", "trace_id"],
    "properties": {
        "msg" if name == "message" else name: schema for name, schema in _ERROR["properties"].items()
    },
}

_XHUO_ERROR = {
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
                        *_ERROR["properties"]["error"]["properties"]["code"]["enum"],
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


def _nullable(type_: str, description: str) -> dict[str, Any]:
    return {"type": [type_, "null"], "description": description}


_KIE_RECORD = {
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
        "resultJson": _nullable("string", 'On success: a JSON string `{"resultUrls": [...]}`.'),
        "failCode": {**_nullable("string", "On failure."), "examples": [c.value for c in FailCode]},
        "failMsg": _nullable("string", "On failure."),
        "costTime": _nullable("integer", "On success: ms of work."),
        "completeTime": _nullable("integer", "Unix ms; on success and failure."),
        "createTime": {"type": "integer", "description": "Unix ms."},
        "progress": _nullable("integer", "0-100 while known."),
    },
}

_XHUO_RESULT = {
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


_KEY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "prefix": {"type": "string", "description": "The first characters of the key, to tell keys apart."},
        "disabled": {"type": "boolean"},
        "expires_at": {"type": ["integer", "null"]},
        "models": {"type": ["array", "null"], "items": {"type": "string"}},
        "created_at": {"type": "integer"},
    },
}


_DELIVERY = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "The webhook-id, the same on every attempt."},
        "url": {"type": "string"},
        "state": {"type": "string", "enum": ["pending", "delivered", "failed"]},
        "attempts": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "attempt": {"type": "integer"},
                    "startedAt": {"type": "integer"},
                    "statusCode": {"type": ["integer", "null"]},
                    "latencyMs": {"type": ["integer", "null"]},
                    "error": {"type": ["string", "null"]},
                },
            },
        },
        "nextAttemptAt": {"type": ["integer", "null"]},
        "createdAt": {"type": "integer"},
        "completedAt": {"type": ["integer", "null"]},
    },
}


def _errors(*statuses: int, schema: str = "Error") -> dict[str, Any]:
    return {
        str(status): {"description": "Error", "content": {"application/json": {"schema": _ref(schema)}}}
        for status in statuses
    }


def _ok(schema: dict[str, Any], description: str = "Success") -> dict[str, Any]:
    return {"200": {"description": description, "content": {"application/json": {"schema": schema}}}}


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def openapi_document(catalogue: Catalogue, version: str) -> dict[str, Any]:
    structs: list[Any] = [CreateKeyBody, UpdateKeyBody]
    mode_structs: dict[str, Any] = {}
    for spec in catalogue:
        for mode, struct in spec.inputs.items():
            mode_structs.setdefault(mode, struct)
    structs += list(mode_structs.values())
    _, components = msgspec.json.schema_components(structs, ref_template=REF + "{name}")
    components |= {
        "TaskStatus": _TASK_STATUS,
        "Error": _ERROR,
        "Key": _KEY,
        "Account": {**_KEY, "properties": {**_KEY["properties"], "webhook_secret": {"type": "string"}}},
        "Delivery": _DELIVERY,
        "GenerateTaskRequest": {
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
                "input": {"oneOf": [_ref(struct.__name__) for struct in mode_structs.values()]},
            },
        },
    }
    input_refs = [_ref(struct.__name__) for struct in mode_structs.values()]
    components |= {
        "KieRecord": _KIE_RECORD,
        "KieError": _KIE_ERROR,
        "XhuoError": _XHUO_ERROR,
        "XhuoRunResult": _XHUO_RESULT,
        "KieCreateTaskRequest": {
            "type": "object",
            "required": ["model", "input"],
            "properties": {
                "model": {"type": "string", "enum": [spec.id for spec in catalogue]},
                "callBackUrl": {
                    "type": "string",
                    "format": "uri",
                    "description": "Receives the recordInfo response, signed per Standard Webhooks, "
                    "when the task ends.",
                },
                "input": {"oneOf": input_refs},
            },
        },
    }
    # A run's body is the input itself, with `callback_url` beside the input's own fields.
    run_refs = []
    for struct in mode_structs.values():
        schema = components[struct.__name__]
        components["Run" + struct.__name__] = {
            **schema,
            "title": "Run" + struct.__name__,
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
        run_refs.append(_ref("Run" + struct.__name__))
    model_param = {
        "name": "model",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": [spec.id for spec in catalogue]},
    }
    bearer: list[dict[str, list[str]]] = [{"bearer": []}]
    task_param = {"name": "taskId", "in": "path", "required": True, "schema": {"type": "string"}}
    wait_param = {
        "name": "wait",
        "in": "query",
        "required": False,
        "description": "Long-poll: answer as soon as the state or progress changes, or after this "
        "many seconds (at most 60).",
        "schema": {"type": "number", "minimum": 0, "maximum": 60},
    }
    paths = {
        "/api/v1/generateTask/{model}": {
            "post": {
                "summary": "Submit a generation task",
                "description": "`async` answers the task id at once; "
                "`sync` waits (bounded) and answers the status.",
                "security": bearer,
                "parameters": [model_param],
                "requestBody": _json_body(_ref("GenerateTaskRequest")),
                "responses": _ok(
                    {
                        "oneOf": [
                            _envelope({"type": "object", "properties": {"taskId": {"type": "string"}}}),
                            _envelope(_ref("TaskStatus")),
                        ]
                    }
                )
                | _errors(400, 401, 403, 404, 413, 500, 503),
            }
        },
        "/api/v1/statusTask/{model}": {
            "get": {
                "summary": "Query a task's state and results",
                "security": bearer,
                "parameters": [
                    model_param,
                    {"name": "taskId", "in": "query", "required": True, "schema": {"type": "string"}},
                    wait_param,
                ],
                "responses": _ok(_envelope(_ref("TaskStatus"))) | _errors(400, 401, 403, 404, 500, 503),
            }
        },
        "/api/v1/cancelTask/{model}": {
            "post": {
                "summary": "Cancel a task: pending ends at once, running stops, finished stays",
                "security": bearer,
                "parameters": [
                    model_param,
                    {"name": "taskId", "in": "query", "required": True, "schema": {"type": "string"}},
                ],
                "responses": _ok(_envelope(_ref("TaskStatus"))) | _errors(400, 401, 403, 404, 503),
            }
        },
        "/api/v1/tasks": {
            "get": {
                "summary": "The key's tasks, newest first, in cursor pages",
                "security": bearer,
                "parameters": [
                    {
                        "name": "state",
                        "in": "query",
                        "schema": {"type": "string", "enum": [s.value for s in TaskState]},
                    },
                    {"name": "model", "in": "query", "schema": {"type": "string"}},
                    {"name": "since", "in": "query", "schema": {"type": "integer", "description": "Unix ms"}},
                    {"name": "until", "in": "query", "schema": {"type": "integer", "description": "Unix ms"}},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 200},
                    },
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": _ok(
                    _envelope(
                        {
                            "type": "object",
                            "properties": {
                                "tasks": {"type": "array", "items": _ref("TaskStatus")},
                                "nextCursor": {"type": ["string", "null"]},
                            },
                        }
                    )
                )
                | _errors(400, 401, 403),
            }
        },
        "/api/v1/models": {
            "get": {
                "summary": "The models this key may use, with input schemas and prices",
                "security": bearer,
                "responses": _ok(
                    _envelope(
                        {
                            "type": "object",
                            "properties": {
                                "models": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "id": {"type": "string"},
                                            "modes": {"type": "array", "items": {"type": "string"}},
                                            "inputSchema": {"type": "object"},
                                            "price": {"type": "integer"},
                                        },
                                    },
                                }
                            },
                        }
                    )
                )
                | _errors(401, 403),
            }
        },
        "/api/v1/tasks/{taskId}/events": {
            "get": {
                "summary": "Server-Sent Events: one `status` event per state or progress change",
                "description": "Authorize with the header, or (browsers) `token` from eventsToken.",
                "parameters": [task_param, {"name": "token", "in": "query", "schema": {"type": "string"}}],
                "responses": {"200": {"description": "An event stream", "content": {"text/event-stream": {}}}}
                | _errors(401, 403, 404),
            }
        },
        "/api/v1/tasks/{taskId}/eventsToken": {
            "post": {
                "summary": "A short-lived token for the event stream of one task",
                "security": bearer,
                "parameters": [task_param],
                "responses": _ok(
                    _envelope(
                        {
                            "type": "object",
                            "properties": {
                                "token": {"type": "string"},
                                "expiresAt": {"type": "integer"},
                                "path": {"type": "string"},
                            },
                        }
                    )
                )
                | _errors(401, 403, 404),
            }
        },
        "/api/v1/jobs/createTask": {
            "post": {
                "summary": "Submit a generation task (KIE jobs dialect)",
                "security": bearer,
                "requestBody": _json_body(_ref("KieCreateTaskRequest")),
                "responses": _ok(
                    _envelope({"type": "object", "properties": {"taskId": {"type": "string"}}}, "msg")
                )
                | _errors(400, 401, 403, 404, 409, 413, 500, 503, schema="KieError"),
            }
        },
        "/api/v1/jobs/recordInfo": {
            "get": {
                "summary": "Query a task, every field present (KIE jobs dialect)",
                "security": bearer,
                "parameters": [
                    {"name": "taskId", "in": "query", "required": True, "schema": {"type": "string"}},
                    wait_param,
                ],
                "responses": _ok(_envelope(_ref("KieRecord"), "msg"))
                | _errors(400, 401, 403, 404, 500, 503, schema="KieError"),
            }
        },
        "/api/v1/run/{model}": {
            "post": {
                "summary": "Run a model and wait for its result (XHuo dialect)",
                "description": "Without `callback_url` it waits (bounded) and answers the result; "
                "a failed task answers its failCode as `error.code` (HTTP 403 CONTENT_VIOLATION, "
                "400 INVALID_INPUT, 504 TIMEOUT, 409 CANCELED, 500 otherwise), and a task still "
                "running at the wait limit answers 504 `timeout` with `task_id`. With "
                "`callback_url` it answers `{success, task_id, trace_id}` at once.",
                "security": bearer,
                "parameters": [model_param],
                "requestBody": _json_body({"oneOf": run_refs}),
                "responses": _ok(_ref("XhuoRunResult"))
                | _errors(400, 401, 403, 404, 409, 413, 500, 503, 504, schema="XhuoError"),
            }
        },
        "/admin/v1/keys": {
            "post": {
                "summary": "Create an API key (shown once)",
                "security": bearer,
                "requestBody": _json_body(_ref("CreateKeyBody")),
                "responses": _ok(_envelope(_ref("Key"))) | _errors(400, 401, 413),
            },
            "get": {
                "summary": "List API keys",
                "security": bearer,
                "responses": _ok(
                    _envelope(
                        {"type": "object", "properties": {"keys": {"type": "array", "items": _ref("Key")}}}
                    )
                )
                | _errors(401),
            },
        },
        "/admin/v1/keys/{key_id}": {
            "patch": {
                "summary": "Change a key: disable, expiry, allowed models, name",
                "security": bearer,
                "parameters": [
                    {"name": "key_id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "requestBody": _json_body(_ref("UpdateKeyBody")),
                "responses": _ok(_envelope(_ref("Key"))) | _errors(400, 401, 404, 413),
            }
        },
        "/files/{task_id}/{name}": {
            "get": {
                "summary": "Download a result file (signed, expiring URL)",
                "parameters": [
                    {"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "expires", "in": "query", "required": True, "schema": {"type": "string"}},
                    {"name": "signature", "in": "query", "required": True, "schema": {"type": "string"}},
                ],
                "responses": {"200": {"description": "The file"}} | _errors(403, 404),
            }
        },
        "/api/v1/account": {
            "get": {
                "summary": "The calling key, with its webhook secret",
                "security": bearer,
                "responses": _ok(_envelope(_ref("Account"))) | _errors(401, 403),
            }
        },
        "/api/v1/account/rotateWebhookSecret": {
            "post": {
                "summary": "Replace the webhook secret; later callbacks are signed with the new one",
                "security": bearer,
                "responses": _ok(_envelope(_ref("Account"))) | _errors(401, 403),
            }
        },
        "/api/v1/tasks/{taskId}/deliveries": {
            "get": {
                "summary": "Every attempt to deliver the task's callback",
                "security": bearer,
                "parameters": [task_param],
                "responses": _ok(
                    _envelope(
                        {
                            "type": "object",
                            "properties": {
                                "taskId": {"type": "string"},
                                "deliveries": {"type": "array", "items": _ref("Delivery")},
                            },
                        }
                    )
                )
                | _errors(401, 403, 404),
            }
        },
        "/api/v1/tasks/{taskId}/redeliver": {
            "post": {
                "summary": "Send the task's latest callback again (same webhook-id)",
                "security": bearer,
                "parameters": [task_param],
                "responses": _ok(_envelope({"type": "object"})) | _errors(400, 401, 403, 404),
            }
        },
        "/metrics": {
            "get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "Metrics"}}}
        },
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "Alive"}}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "gengate", "version": version, "description": "Asynchronous AI generation tasks."},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
