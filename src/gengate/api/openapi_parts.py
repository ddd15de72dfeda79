"""The building blocks of the OpenAPI document: envelopes, shared schemas, response helpers."""

from __future__ import annotations

from typing import Any

from gengate.domain.errors import GatewayError
from gengate.domain.ledger import LedgerKind
from gengate.domain.states import FailCode, TaskState

REF = "#/components/schemas/"


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


def envelope(data: dict[str, Any], message_field: str = "message") -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["code", message_field, "data"],
        "properties": {
            "code": {"type": "integer", "example": 200},
            message_field: {"type": "string"},
            "data": data,
        },
    }


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


def all_errors() -> list[type[GatewayError]]:
    found: list[type[GatewayError]] = []
    pending = [GatewayError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


ERROR: dict[str, Any] = {
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
                "code": {"type": "string", "enum": sorted({c.code for c in all_errors()})},
                "message": {"type": "string"},
            },
        },
        "trace_id": {"type": "string", "format": "uuid"},
    },
}


KIE_ERROR = {
    **ERROR,
    "required": ["code", "msg", "data", "error", "trace_id"],
    "properties": {
        "msg" if name == "message" else name: schema for name, schema in ERROR["properties"].items()
    },
}

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


def nullable(type_: str, description: str) -> dict[str, Any]:
    return {"type": [type_, "null"], "description": description}


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


KEY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "prefix": {"type": "string", "description": "The first characters of the key, to tell keys apart."},
        "disabled": {"type": "boolean"},
        "expires_at": {"type": ["integer", "null"]},
        "models": {"type": ["array", "null"], "items": {"type": "string"}},
        "created_at": {"type": "integer"},
        "credits": {"type": ["integer", "null"], "description": "Balance; null: unlimited."},
        "rate_limit": {
            "type": ["string", "null"],
            "description": "Requests per moving window, e.g. `60/minute`; null: the server's default.",
        },
        "max_concurrent": {
            "type": ["integer", "null"],
            "description": "Pending and processing tasks at once; null: no cap.",
        },
    },
}

LEDGER_ENTRY = {
    "type": "object",
    "required": ["id", "kind", "amount", "balance", "taskId", "createdAt"],
    "properties": {
        "id": {"type": "integer"},
        "kind": {
            "type": "string",
            "enum": [kind.value for kind in LedgerKind],
            "description": "`charge` at submit, `refund` of a failed or canceled task (once), "
            "`topup` by an admin.",
        },
        "amount": {"type": "integer", "description": "Signed change of the balance."},
        "balance": {"type": ["integer", "null"], "description": "After the change; null: unlimited."},
        "taskId": {"type": ["string", "null"]},
        "createdAt": {"type": "integer", "description": "Unix ms."},
    },
}

#: On every response to a key whose requests are rate limited (absent when none applies).
RATE_LIMIT_HEADERS = {
    "X-RateLimit-Limit": {"description": "Requests per window.", "schema": {"type": "integer"}},
    "X-RateLimit-Remaining": {"description": "Requests left in the window.", "schema": {"type": "integer"}},
    "X-RateLimit-Reset": {
        "description": "Unix seconds when the oldest request leaves the window.",
        "schema": {"type": "integer"},
    },
}

RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}


def rate_limited(operation: dict[str, Any], schema: str = "Error") -> dict[str, Any]:
    """An operation of a key's: 429 `too_many_requests` past its limit, and the rate-limit
    headers on its answers."""
    responses = {"429": errors(429, schema=schema)["429"], **operation["responses"]}
    responses["429"] = {**responses["429"], "headers": RETRY_AFTER | RATE_LIMIT_HEADERS}
    for status, response in responses.items():
        if status != "429":
            responses[status] = {**response, "headers": {**response.get("headers", {}), **RATE_LIMIT_HEADERS}}
    return {**operation, "responses": responses}


DELIVERY = {
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


def errors(*statuses: int, schema: str = "Error") -> dict[str, Any]:
    return {
        str(status): {"description": "Error", "content": {"application/json": {"schema": ref(schema)}}}
        for status in statuses
    }


def ok(schema: dict[str, Any], description: str = "Success") -> dict[str, Any]:
    return {"200": {"description": description, "content": {"application/json": {"schema": schema}}}}


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def with_limits(paths: dict[str, Any]) -> dict[str, Any]:
    """Every route of a key's is rate limited (the event stream too, however it is authorized),
    and every 503 (queue full, store down) says when to retry."""
    return {path: {method: _limited(path, op) for method, op in item.items()} for path, item in paths.items()}


def _limited(path: str, operation: dict[str, Any]) -> dict[str, Any]:
    if ("security" in operation or path.endswith("/events")) and not path.startswith("/admin/"):
        schema = "KieError" if "/jobs/" in path else "XhuoError" if "/run/" in path else "Error"
        operation = rate_limited(operation, schema)
    responses = operation["responses"]
    if "503" in responses:
        headers = {**responses["503"].get("headers", {}), **RETRY_AFTER}
        operation = {**operation, "responses": {**responses, "503": {**responses["503"], "headers": headers}}}
    return operation
