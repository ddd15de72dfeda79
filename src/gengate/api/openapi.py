"""The OpenAPI document, built from the same msgspec structs that validate requests."""

from __future__ import annotations

from typing import Any

import msgspec

from gengate.api.admin import CreateKeyBody, UpdateKeyBody
from gengate.api.openapi_parts import (
    DELIVERY,
    ERROR,
    KEY,
    KIE_ERROR,
    KIE_RECORD,
    LEDGER_ENTRY,
    REF,
    TASK_STATUS,
    XHUO_ERROR,
    XHUO_RESULT,
    envelope,
    errors,
    json_body,
    ok,
    ref,
    with_limits,
)
from gengate.domain.catalogue import Catalogue
from gengate.domain.states import TaskState


def openapi_document(catalogue: Catalogue, version: str) -> dict[str, Any]:
    structs: list[Any] = [CreateKeyBody, UpdateKeyBody]
    mode_structs: dict[str, Any] = {}
    for spec in catalogue:
        for mode, struct in spec.inputs.items():
            mode_structs.setdefault(mode, struct)
    structs += list(mode_structs.values())
    _, components = msgspec.json.schema_components(structs, ref_template=REF + "{name}")
    # A key's `models` are ids of this catalogue: say which.
    model_ids = [spec.id for spec in catalogue]
    for body in ("CreateKeyBody", "UpdateKeyBody"):
        listed = components[body]["properties"]["models"]["anyOf"][0]
        listed["items"] = {"type": "string", "enum": model_ids}
    # Set the balance or add to it, not both at once.
    components["UpdateKeyBody"]["not"] = {"required": ["credits", "add_credits"]}
    components |= {
        "TaskStatus": TASK_STATUS,
        "Error": ERROR,
        "Key": KEY,
        "Account": {**KEY, "properties": {**KEY["properties"], "webhook_secret": {"type": "string"}}},
        "Delivery": DELIVERY,
        "LedgerEntry": LEDGER_ENTRY,
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
                "input": {"oneOf": [ref(struct.__name__) for struct in mode_structs.values()]},
            },
        },
    }
    input_refs = [ref(struct.__name__) for struct in mode_structs.values()]
    components |= {
        "KieRecord": KIE_RECORD,
        "KieError": KIE_ERROR,
        "XhuoError": XHUO_ERROR,
        "XhuoRunResult": XHUO_RESULT,
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
        run_refs.append(ref("Run" + struct.__name__))
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
                "requestBody": json_body(ref("GenerateTaskRequest")),
                "responses": ok(
                    {
                        # A status also has a taskId: the two may both match.
                        "anyOf": [
                            envelope({"type": "object", "properties": {"taskId": {"type": "string"}}}),
                            envelope(ref("TaskStatus")),
                        ]
                    }
                )
                | errors(400, 401, 403, 404, 409, 413, 500, 503),
            }
        },
        "/api/v1/statusTask/{model}": {
            "get": {
                "summary": "Query a task's state and results",
                "security": bearer,
                "parameters": [
                    model_param,
                    {
                        "name": "taskId",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1},
                    },
                    wait_param,
                ],
                "responses": ok(envelope(ref("TaskStatus"))) | errors(400, 401, 403, 404, 500, 503),
            }
        },
        "/api/v1/cancelTask/{model}": {
            "post": {
                "summary": "Cancel a task: pending ends at once, running stops, finished stays",
                "security": bearer,
                "parameters": [
                    model_param,
                    {
                        "name": "taskId",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1},
                    },
                ],
                "responses": ok(envelope(ref("TaskStatus"))) | errors(400, 401, 403, 404, 503),
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
                "responses": ok(
                    envelope(
                        {
                            "type": "object",
                            "properties": {
                                "tasks": {"type": "array", "items": ref("TaskStatus")},
                                "nextCursor": {"type": ["string", "null"]},
                            },
                        }
                    )
                )
                | errors(400, 401, 403),
            }
        },
        "/api/v1/models": {
            "get": {
                "summary": "The models this key may use, with input schemas and prices",
                "security": bearer,
                "responses": ok(
                    envelope(
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
                | errors(401, 403),
            }
        },
        "/api/v1/tasks/{taskId}/events": {
            "get": {
                "summary": "Server-Sent Events: one `status` event per state or progress change",
                "description": "Authorize with the header, or (browsers) `token` from eventsToken.",
                "parameters": [task_param, {"name": "token", "in": "query", "schema": {"type": "string"}}],
                "responses": {"200": {"description": "An event stream", "content": {"text/event-stream": {}}}}
                | errors(401, 403, 404),
            }
        },
        "/api/v1/tasks/{taskId}/eventsToken": {
            "post": {
                "summary": "A short-lived token for the event stream of one task",
                "security": bearer,
                "parameters": [task_param],
                "responses": ok(
                    envelope(
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
                | errors(401, 403, 404),
            }
        },
        "/api/v1/jobs/createTask": {
            "post": {
                "summary": "Submit a generation task (KIE jobs dialect)",
                "security": bearer,
                "requestBody": json_body(ref("KieCreateTaskRequest")),
                "responses": ok(
                    envelope({"type": "object", "properties": {"taskId": {"type": "string"}}}, "msg")
                )
                | errors(400, 401, 403, 404, 409, 413, 500, 503, schema="KieError"),
            }
        },
        "/api/v1/jobs/recordInfo": {
            "get": {
                "summary": "Query a task, every field present (KIE jobs dialect)",
                "security": bearer,
                "parameters": [
                    {
                        "name": "taskId",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1},
                    },
                    wait_param,
                ],
                "responses": ok(envelope(ref("KieRecord"), "msg"))
                | errors(400, 401, 403, 404, 500, 503, schema="KieError"),
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
                "requestBody": json_body({"oneOf": run_refs}),
                "responses": ok(ref("XhuoRunResult"))
                | errors(400, 401, 403, 404, 409, 413, 500, 503, 504, schema="XhuoError"),
            }
        },
        "/admin/v1/keys": {
            "post": {
                "summary": "Create an API key (shown once)",
                "security": bearer,
                "requestBody": json_body(ref("CreateKeyBody")),
                "responses": ok(envelope(ref("Key"))) | errors(400, 401, 413),
            },
            "get": {
                "summary": "List API keys",
                "security": bearer,
                "responses": ok(
                    envelope(
                        {"type": "object", "properties": {"keys": {"type": "array", "items": ref("Key")}}}
                    )
                )
                | errors(401),
            },
        },
        "/admin/v1/keys/{key_id}": {
            "patch": {
                "summary": "Change a key: disable, expiry, allowed models, name",
                "security": bearer,
                "parameters": [
                    {"name": "key_id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "requestBody": json_body(ref("UpdateKeyBody")),
                "responses": ok(envelope(ref("Key"))) | errors(400, 401, 404, 413),
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
                "responses": {"200": {"description": "The file"}} | errors(403, 404),
            }
        },
        "/api/v1/account": {
            "get": {
                "summary": "The calling key, with its webhook secret",
                "security": bearer,
                "responses": ok(envelope(ref("Account"))) | errors(401, 403),
            }
        },
        "/api/v1/account/usage": {
            "get": {
                "summary": "The key's credit ledger, newest first, and its balance",
                "description": "Every charge (at submit), refund (of a failed or canceled task, once) "
                "and top-up, in cursor pages.",
                "security": bearer,
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 200},
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "schema": {"type": "string", "pattern": "^([1-9][0-9]{0,17})?$"},
                    },
                ],
                "responses": ok(
                    envelope(
                        {
                            "type": "object",
                            "properties": {
                                "credits": {"type": ["integer", "null"]},
                                "entries": {"type": "array", "items": ref("LedgerEntry")},
                                "nextCursor": {"type": ["string", "null"]},
                            },
                        }
                    )
                )
                | errors(400, 401, 403),
            }
        },
        "/api/v1/account/rotateWebhookSecret": {
            "post": {
                "summary": "Replace the webhook secret; later callbacks are signed with the new one",
                "security": bearer,
                "responses": ok(envelope(ref("Account"))) | errors(401, 403),
            }
        },
        "/api/v1/tasks/{taskId}/deliveries": {
            "get": {
                "summary": "Every attempt to deliver the task's callback",
                "security": bearer,
                "parameters": [task_param],
                "responses": ok(
                    envelope(
                        {
                            "type": "object",
                            "properties": {
                                "taskId": {"type": "string"},
                                "deliveries": {"type": "array", "items": ref("Delivery")},
                            },
                        }
                    )
                )
                | errors(401, 403, 404),
            }
        },
        "/api/v1/tasks/{taskId}/redeliver": {
            "post": {
                "summary": "Send the task's latest callback again (same webhook-id)",
                "security": bearer,
                "parameters": [task_param],
                "responses": ok(envelope({"type": "object"})) | errors(400, 401, 403, 404),
            }
        },
        "/metrics": {
            "get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "Metrics"}}}
        },
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "Alive"}}}},
        "/readyz": {
            "get": {
                "summary": "Readiness: the store answers and writes, the disk has room, and every "
                "model has a provider to run it",
                "description": "503 `unavailable` (with the checks below and `unavailableModels`) "
                "while the store does not answer, a store write failed for its disk within 30 s and "
                "none has succeeded since, a data or files folder has less than "
                "`GENGATE_MIN_FREE_BYTES` free, or every provider of some model has its circuit "
                "breaker open.",
                "responses": ok(
                    {
                        "type": "object",
                        "properties": {
                            "status": {"type": "string", "enum": ["ready"]},
                            "store": {"type": "string", "enum": ["ok"]},
                            "writes": {
                                "type": "string",
                                "enum": ["ok", "unchecked"],
                                "description": "`unchecked` with PostgreSQL: its server's disk is its own.",
                            },
                            "disk": {"type": "string", "enum": ["ok", "unchecked"]},
                            "freeBytes": {
                                "type": "object",
                                "description": "Free bytes of each folder written to (`data`, `files`).",
                                "additionalProperties": {"type": "integer"},
                            },
                            "circuits": {
                                "type": "object",
                                "description": "Each upstream provider's circuit breaker.",
                                "additionalProperties": {
                                    "type": "string",
                                    "enum": ["closed", "open", "half_open"],
                                },
                            },
                        },
                    }
                )
                | errors(503),
            }
        },
        "/hooks/upstream/{token}": {
            "post": {
                "summary": "Callback for an upstream provider: wakes the relay that asked for it",
                "description": "The gateway hands this URL (with a signed token) to the upstreams it "
                "relays tasks to. The body is not read; the relay reads the upstream's status itself.",
                "parameters": [
                    {"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": ok(envelope({"type": "null"})) | errors(404),
            }
        },
    }
    paths = with_limits(paths)
    return {
        "openapi": "3.1.0",
        "info": {"title": "gengate", "version": version, "description": "Asynchronous AI generation tasks."},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
