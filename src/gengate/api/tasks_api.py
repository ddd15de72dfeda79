"""A key's tasks beyond one status read: listing, the model catalogue, and a live event stream."""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gengate.api.openapi_parts import TASK_PARAM, DocSpec, Fragment, errors, ok_data, operation, ref
from gengate.api.responses import success
from gengate.api.routing import ApiRoutes, route
from gengate.dialects.apixo import status_data
from gengate.domain.errors import BadRequest
from gengate.domain.inputs import input_json_schema
from gengate.domain.states import TaskState
from gengate.domain.task import Task
from gengate.store.base import TaskQuery

MAX_PAGE = 200
#: How long a browser's events token lives.
EVENTS_TOKEN_TTL_MS = 10 * 60 * 1000
#: A comment line this often keeps proxies from closing a quiet stream.
KEEPALIVE_S = 15.0


class TasksApi(ApiRoutes):
    # -- listing ---------------------------------------------------------------------------
    @route("/api/v1/tasks", "GET")
    async def list_tasks(self, request: Request) -> Response:
        """Own tasks, newest first, filtered by `state`, `model`, `since`/`until` (Unix ms),
        `limit` per page; `cursor` (from `nextCursor`) continues."""
        key = await self.ctx.authenticate(request.scope)
        params = request.query_params
        state = params.get("state")
        if state is not None and state not in {s.value for s in TaskState}:
            raise BadRequest(f"`state` must be one of: {', '.join(s.value for s in TaskState)}.")
        limit = _int_param(params.get("limit"), "limit", 50)
        if not 1 <= limit <= MAX_PAGE:
            raise BadRequest(f"`limit` must be between 1 and {MAX_PAGE}.")
        query = TaskQuery(
            state=state,
            model=params.get("model"),
            since=_int_param(params.get("since"), "since", None),
            until=_int_param(params.get("until"), "until", None),
            before=decode_cursor(params.get("cursor")),
            limit=limit,
        )
        tasks = await self.ctx.tasks.list(key, query)
        next_cursor = encode_cursor(tasks[-1]) if len(tasks) == limit else None
        return success(
            {"tasks": [status_data(task, self.ctx.links) for task in tasks], "nextCursor": next_cursor}
        )

    # -- catalogue -------------------------------------------------------------------------
    @route("/api/v1/models", "GET")
    async def models(self, request: Request) -> Response:
        """The models this key may use: modes, the input JSON schema of each, and the price."""
        key = await self.ctx.authenticate(request.scope)
        models = [
            {
                "id": spec.id,
                "modes": list(spec.modes),
                "inputSchema": {
                    mode: check.json_schema()
                    if (check := spec.input_checks.get(mode))
                    else input_json_schema(struct)
                    for mode, struct in spec.inputs.items()
                },
                "price": spec.price,
            }
            for spec in self.ctx.catalogue
            if key.models is None or spec.id in key.models
        ]
        return success({"models": models})

    # -- events ----------------------------------------------------------------------------
    @route("/api/v1/tasks/{task_id}/eventsToken", "POST")
    async def events_token(self, request: Request) -> Response:
        """A short-lived token for `events?token=`: browsers' EventSource sends no headers."""
        key = await self.ctx.authenticate(request.scope)
        task = await self.ctx.tasks.get(key, request.path_params["task_id"])
        token, expires = self.ctx.keys.scoped_token(key, f"events:{task.id}", EVENTS_TOKEN_TTL_MS)
        return success(
            {"token": token, "expiresAt": expires, "path": f"/api/v1/tasks/{task.id}/events?token={token}"}
        )

    @route("/api/v1/tasks/{task_id}/events", "GET")
    async def events(self, request: Request) -> Response:
        """Server-Sent Events: the status now, then one event per state or progress change,
        ending after the terminal state."""
        task_id = request.path_params["task_id"]
        token = request.query_params.get("token")
        if token is not None and "authorization" not in request.headers:
            key = await self.ctx.keys.key_of_scoped_token(token, f"events:{task_id}")
            await self.ctx.limit_rate(key, request.scope)
        else:
            key = await self.ctx.authenticate(request.scope)
        task = await self.ctx.tasks.get(key, task_id)
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(self._stream(task), media_type="text/event-stream", headers=headers)

    async def _stream(self, task: Task) -> AsyncIterator[bytes]:
        event_id = 0
        async for current in self.ctx.tasks.changes(task, KEEPALIVE_S):
            if current is None:
                yield b": keep-alive\n\n"
                continue
            event_id += 1
            yield _event(event_id, status_data(current, self.ctx.links))


def _event(event_id: int, data: dict[str, Any]) -> bytes:
    return b"id: %d\nevent: status\ndata: %s\n\n" % (event_id, orjson.dumps(data))


def _int_param(raw: str | None, name: str, default: int | None) -> Any:
    if raw is None:  # present but empty is no integer: refused like any other non-number
        return default
    if not (raw.isascii() and raw.lstrip("-").isdigit()) or len(raw) > 18:
        raise BadRequest(f"`{name}` must be an integer.")
    return int(raw)


def encode_cursor(task: Task) -> str:
    return base64.urlsafe_b64encode(f"{task.create_time}:{task.id}".encode()).decode().rstrip("=")


def decode_cursor(raw: str | None) -> tuple[int, str] | None:
    if not raw:
        return None
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        time_text, _, task_id = text.partition(":")
        return int(time_text), task_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadRequest("`cursor` is invalid: use the `nextCursor` of the previous page.") from None


def openapi(spec: DocSpec) -> Fragment:
    """The key's task list, the catalogue, and a task's event stream."""
    paths = {
        "/api/v1/tasks": {
            "get": operation(
                "The key's tasks, newest first, in cursor pages",
                ok_data(
                    {
                        "tasks": {"type": "array", "items": ref("TaskStatus")},
                        "nextCursor": {"type": ["string", "null"]},
                    }
                )
                | errors(400, 401, 403),
                parameters=[
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
            )
        },
        "/api/v1/models": {
            "get": operation(
                "The models this key may use, with input schemas and prices",
                ok_data(
                    {
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
                    }
                )
                | errors(401, 403),
            )
        },
        "/api/v1/tasks/{taskId}/events": {
            "get": operation(
                "Server-Sent Events: one `status` event per state or progress change",
                {"200": {"description": "An event stream", "content": {"text/event-stream": {}}}}
                | errors(401, 403, 404),
                description="Authorize with the header, or (browsers) `token` from eventsToken.",
                parameters=[TASK_PARAM, {"name": "token", "in": "query", "schema": {"type": "string"}}],
                secured=False,
            )
        },
        "/api/v1/tasks/{taskId}/eventsToken": {
            "post": operation(
                "A short-lived token for the event stream of one task",
                ok_data(
                    {
                        "token": {"type": "string"},
                        "expiresAt": {"type": "integer"},
                        "path": {"type": "string"},
                    }
                )
                | errors(401, 403, 404),
                parameters=[TASK_PARAM],
            )
        },
    }
    return Fragment(paths)
