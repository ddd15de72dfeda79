"""The building blocks of the OpenAPI document: envelopes, shared schemas, response helpers.

Each route module describes its own routes beside their handlers (`openapi(spec) -> Fragment`);
:mod:`gengate.api.openapi` puts the fragments together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from gengate.domain.catalogue import Catalogue
from gengate.domain.errors import GatewayError

REF = "#/components/schemas/"


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


@dataclass(frozen=True, slots=True)
class Fragment:
    """One route group's part of the document: its `paths`, and the `schemas` it adds (or,
    for schemas drawn from structs, replaces) under `components`."""

    paths: dict[str, Any]
    schemas: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DocSpec:
    """What the route descriptions are drawn from: the catalogue, and the schemas msgspec draws
    from the request structs (the admin bodies and one input struct per mode) in `schemas`."""

    catalogue: Catalogue
    #: The names of the input structs, one per mode (the first model's struct for each).
    input_names: list[str]
    schemas: dict[str, Any]

    @classmethod
    def of(cls, catalogue: Catalogue, structs: list[Any]) -> DocSpec:
        mode_structs: dict[str, Any] = {}
        for spec in catalogue:
            for mode, struct in spec.inputs.items():
                mode_structs.setdefault(mode, struct)
        inputs = list(mode_structs.values())
        _, schemas = msgspec.json.schema_components([*structs, *inputs], ref_template=REF + "{name}")
        return cls(catalogue, [struct.__name__ for struct in inputs], schemas)

    @property
    def model_ids(self) -> list[str]:
        return [spec.id for spec in self.catalogue]

    def input_refs(self) -> list[dict[str, str]]:
        return [ref(name) for name in self.input_names]

    def model_param(self) -> dict[str, Any]:
        """The `{model}` path parameter: one of this catalogue's ids."""
        return {
            "name": "model",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "enum": self.model_ids},
        }


BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
TASK_PARAM = {"name": "taskId", "in": "path", "required": True, "schema": {"type": "string"}}
TASK_ID_QUERY = {
    "name": "taskId",
    "in": "query",
    "required": True,
    "schema": {"type": "string", "minLength": 1},
}
WAIT_PARAM = {
    "name": "wait",
    "in": "query",
    "required": False,
    "description": "Long-poll: answer as soon as the state or progress changes, or after this "
    "many seconds (at most 60).",
    "schema": {"type": "number", "minimum": 0, "maximum": 60},
}


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


def nullable(type_: str, description: str) -> dict[str, Any]:
    return {"type": [type_, "null"], "description": description}


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


def errors(*statuses: int, schema: str = "Error") -> dict[str, Any]:
    return {
        str(status): {"description": "Error", "content": {"application/json": {"schema": ref(schema)}}}
        for status in statuses
    }


def ok(schema: dict[str, Any], description: str = "Success") -> dict[str, Any]:
    return {"200": {"description": description, "content": {"application/json": {"schema": schema}}}}


def operation(
    summary: str,
    responses: dict[str, Any],
    *,
    description: str | None = None,
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    secured: bool = True,
) -> dict[str, Any]:
    """One operation; `secured` ones take the bearer key (and so are rate limited)."""
    op: dict[str, Any] = {"summary": summary}
    if description is not None:
        op["description"] = description
    if secured:
        op["security"] = BEARER
    if parameters is not None:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = json_body(body)
    op["responses"] = responses
    return op


def enveloped(data: dict[str, Any], message_field: str = "message") -> dict[str, Any]:
    """A success whose body is the `{code, message, data}` envelope around `data`."""
    return ok(envelope(data, message_field))


def ok_data(properties: dict[str, Any], message_field: str = "message") -> dict[str, Any]:
    """A success whose envelope's `data` is an object of `properties`."""
    return enveloped({"type": "object", "properties": properties}, message_field)


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
