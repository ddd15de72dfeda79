"""The Replicate predictions routes, so that the official `replicate` client works unmodified.

`POST /v1/models/{owner}/{name}/predictions` (what `replicate.run` sends) and
`POST /v1/predictions` (`version` or `model` naming the model) create a task like every
other door; `GET /v1/predictions[/{id}]`, `POST .../cancel` and `GET .../stream` read it
whatever door it came in by. `Prefer: wait[=N]` holds a create until the prediction ends;
one that has not ended by then answers `starting`, the one status on which `replicate.run`
goes on polling. Bodies are :mod:`gengate.dialects.replicate`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope

from gengate.api.body import optional_string, receive_json_object
from gengate.api.context import ApiContext
from gengate.api.hotpath import HotRoute, header_value
from gengate.api.openapi_parts import ERROR, DocSpec, Fragment, errors, operation, ref
from gengate.api.params import MAX_WAIT_S
from gengate.api.replicate_stream import prediction_events
from gengate.api.responses import JSONResponse
from gengate.api.routing import ApiRoutes, route
from gengate.api.tasks_api import decode_cursor, encode_cursor
from gengate.api.trace import trace_id_of
from gengate.dialects.replicate import WEBHOOK_EVENTS, model_candidates, prediction
from gengate.domain.dialect import Dialect
from gengate.domain.errors import BadRequest, ModelNotFound
from gengate.domain.keys import ApiKey
from gengate.domain.task import Task, TaskLog
from gengate.store.base import TaskQuery

PREDICTIONS = "/v1/predictions"
STATUS_PREFIX = PREDICTIONS + "/"
PAGE_SIZE = 100
#: Bytes of finished predictions' bodies kept (a finished task never changes; its logs can be
#: half a megabyte, so the bound is in bytes); past it the cache starts again empty.
FINISHED_CACHE_BYTES = 32 << 20
#: Answer a held create this much before the client's read timeout (the wait plus 0.5 s) runs out.
WAIT_MARGIN_S = 0.5


async def authenticate(ctx: ApiContext, scope: Scope) -> ApiKey:
    """The key of `Authorization: Bearer <key>` or Replicate's older `Token <key>`."""
    header = header_value(scope, b"authorization")
    if header is not None and header[:6].lower() == "token ":
        header = "Bearer " + header[6:]
    return await ctx.authenticate(scope, header)


def preferred_wait(header: str | None) -> float | None:
    """Seconds of `Prefer: wait` (60) or `wait=N` (1-60); None when not asked to wait."""
    for preference in (header or "").split(","):
        name, _, value = preference.partition("=")
        if name.strip().lower() != "wait":
            continue
        value = value.strip()
        if not value:
            return MAX_WAIT_S
        if not (value.isascii() and value.isdigit() and 1 <= int(value) <= MAX_WAIT_S):
            raise BadRequest(f"`Prefer: wait=N` takes N from 1 to {MAX_WAIT_S:g} seconds.")
        return float(value)
    return None


def named_reference(body: dict[str, Any]) -> str:
    """The model a `POST /v1/predictions` names, by `version` or `model`."""
    reference = optional_string(body, "version") or optional_string(body, "model")
    if not reference:
        raise BadRequest("`version` (or `model`) is required: the model, as `owner/name`.")
    return reference


def webhook_events(body: dict[str, Any]) -> list[str] | None:
    """`webhook_events_filter`: a list of known event names, or None when not given."""
    events = body.get("webhook_events_filter")
    if events is None:
        return None
    if not isinstance(events, list) or not all(isinstance(e, str) and e in WEBHOOK_EVENTS for e in events):
        raise BadRequest(f"`webhook_events_filter` must be a list of: {', '.join(WEBHOOK_EVENTS)}.")
    return events


class ReplicateRoutes(ApiRoutes):
    def __init__(self, ctx: ApiContext) -> None:
        super().__init__(ctx)
        self.owner = ctx.links.model_owner
        self.api_base = ctx.links.api_base
        self._finished: dict[tuple[str, int], orjson.Fragment] = {}
        self._finished_bytes = 0

    def resolve_model(self, reference: str) -> str:
        """The gengate model a Replicate reference names; `model_not_found` if none."""
        for candidate in model_candidates(reference, self.owner):
            if candidate in self.ctx.catalogue:
                return candidate
        raise ModelNotFound(f"Model '{reference}' does not exist.")

    # -- creating ---------------------------------------------------------------------------
    @route("/v1/models/{owner}/{name}/predictions", "POST")
    async def create_for_model(self, request: Request) -> Response:
        reference = f"{request.path_params['owner']}/{request.path_params['name']}"
        prediction_body = await self.create(request.scope, request.receive, lambda _body: reference)
        return JSONResponse(prediction_body, status_code=201)

    @route(PREDICTIONS, "POST")
    async def create_for_version(self, request: Request) -> Response:
        prediction_body = await self.create(request.scope, request.receive, named_reference)
        return JSONResponse(prediction_body, status_code=201)

    async def hot_create(self, scope: Scope, receive: Receive) -> Any:
        return await self.create(scope, receive, named_reference)

    async def create(
        self, scope: Scope, receive: Receive, reference_of: Callable[[dict[str, Any]], str]
    ) -> Any:
        """`{input, webhook?, webhook_events_filter?}`; the whole body is kept as the task's request.
        The webhook gets the prediction when it completes (`completed`, or no filter), and as the
        filter asks when the run starts and as it logs; a filter that leaves `completed` out gets
        none (the completion's is the delivery a task's webhook is kept for). Shared by the
        routes and the hot path in front of the framework."""
        ctx = self.ctx
        key = await authenticate(ctx, scope)
        wait_s = preferred_wait(header_value(scope, b"prefer"))
        body = await receive_json_object(receive, ctx.max_body_bytes)
        model = self.resolve_model(reference_of(body))
        if "input" not in body:
            raise BadRequest("`input` is required.")
        webhook = optional_string(body, "webhook") or None
        events = webhook_events(body)
        callback_url = webhook if events is None or "completed" in events else None
        task = await ctx.tasks.submit(
            key,
            model,
            body["input"],
            request=body,
            request_type="callback" if callback_url else "sync" if wait_s else "async",
            callback_url=callback_url,
            trace_id=trace_id_of(scope),
            dialect=Dialect.REPLICATE,
            idempotency_key=header_value(scope, b"idempotency-key"),
        )
        status = None
        if wait_s:
            hold_s = max(WAIT_MARGIN_S, min(wait_s, ctx.sync_wait_s) - WAIT_MARGIN_S)
            task = await ctx.tasks.wait_until_done(task, hold_s)
            if not task.state.is_terminal():
                status = "starting"
        return await self.render(task, status=status)

    # -- reading ----------------------------------------------------------------------------
    @route(STATUS_PREFIX + "{prediction_id}", "GET")
    async def get(self, request: Request) -> Response:
        return JSONResponse(await self.status(request.scope, request.path_params["prediction_id"]))

    async def status(self, scope: Scope, prediction_id: str) -> Any:
        """One prediction; shared by the route and the hot path in front of the framework."""
        key = await authenticate(self.ctx, scope)
        return await self.render(await self.ctx.tasks.get(key, prediction_id))

    async def hot_status(self, scope: Scope) -> Any:
        return await self.status(scope, scope["path"][len(STATUS_PREFIX) :])

    def hot_routes(self) -> list[HotRoute]:
        return [
            HotRoute("GET", STATUS_PREFIX, self.hot_status, Dialect.REPLICATE, rest_name="prediction_id"),
            HotRoute("POST", PREDICTIONS, self.hot_create, Dialect.REPLICATE, exact=True, body=True, ok=201),
        ]

    @route(PREDICTIONS, "GET")
    async def list_predictions(self, request: Request) -> Response:
        """The key's own predictions (from every door), newest first; `next` continues."""
        key = await authenticate(self.ctx, request.scope)
        query = TaskQuery(before=decode_cursor(request.query_params.get("cursor")), limit=PAGE_SIZE)
        tasks = await self.ctx.tasks.list(key, query)
        following = None
        if len(tasks) == PAGE_SIZE:
            following = f"{self.api_base}{PREDICTIONS}?cursor={encode_cursor(tasks[-1])}"
        results = [self.body(task, None) for task in tasks]
        return JSONResponse({"previous": None, "next": following, "results": results})

    @route(STATUS_PREFIX + "{prediction_id}/cancel", "POST")
    async def cancel(self, request: Request) -> Response:
        """A pending prediction ends `canceled` at once, a running one once its model stops."""
        key = await authenticate(self.ctx, request.scope)
        task, _changed = await self.ctx.tasks.cancel(key, request.path_params["prediction_id"])
        return JSONResponse(await self.render(task))

    @route(STATUS_PREFIX + "{prediction_id}/stream", "GET")
    async def stream(self, request: Request) -> Response:
        key = await authenticate(self.ctx, request.scope)
        task = await self.ctx.tasks.get(key, request.path_params["prediction_id"])
        return prediction_events(self.ctx, task)

    @route("/v1/webhooks/default/secret", "GET")
    async def webhook_secret(self, request: Request) -> Response:
        """The key's signing secret: webhooks are signed per Standard Webhooks, as Replicate's."""
        key = await authenticate(self.ctx, request.scope)
        return JSONResponse({"key": self.ctx.keys.webhook_secret(key)})

    # -- bodies -----------------------------------------------------------------------------
    async def render(self, task: Task, *, status: str | None = None) -> Any:
        """The prediction with its logs; a finished one's body is kept, as it never changes."""
        if status is None and task.state.is_terminal() and task.complete_time is not None:
            cache_key = (task.id, task.complete_time)
            cached = self._finished.get(cache_key)
            if cached is None:
                encoded = orjson.dumps(self.body(task, await self.logs(task)))
                if self._finished_bytes + len(encoded) > FINISHED_CACHE_BYTES:
                    self._finished.clear()
                    self._finished_bytes = 0
                cached = orjson.Fragment(encoded)
                self._finished[cache_key] = cached
                self._finished_bytes += len(encoded)
            return cached
        return self.body(task, await self.logs(task), status)

    async def logs(self, task: Task) -> Sequence[TaskLog]:
        """Its log lines; a task no worker has claimed has none, and is not looked up."""
        if task.attempts == 0:
            return ()
        return await self.ctx.tasks.store.task_logs(task.id)

    def body(self, task: Task, logs: Sequence[TaskLog] | None, status: str | None = None) -> dict[str, Any]:
        links = self.ctx.links
        return prediction(task, links, logs, api_base=self.api_base, owner=self.owner, status=status)


PREDICTION: dict[str, Any] = {
    "type": "object",
    "required": ["id", "model", "version", "status", "input", "output", "logs", "error", "metrics"],
    "properties": {
        "id": {"type": "string", "description": "The task id: the same task through every door."},
        "model": {"type": "string", "description": "`owner/name`."},
        "version": {"type": "string", "description": "The model again: a gengate model has one version."},
        "status": {"type": "string", "enum": ["starting", "processing", "succeeded", "failed", "canceled"]},
        "input": {"type": "object", "description": "The validated input, defaults filled."},
        "output": {
            "description": "On success: a URL for one file, a list of URLs for several or for images, "
            "else the model's plain output values."
        },
        "logs": {"type": ["string", "null"], "description": "The run's log lines; null in a listing."},
        "error": {"type": ["string", "null"]},
        "metrics": {"type": "object", "properties": {"predict_time": {"type": "number"}}},
        "created_at": {"type": ["string", "null"], "format": "date-time"},
        "started_at": {"type": ["string", "null"], "format": "date-time"},
        "completed_at": {"type": ["string", "null"], "format": "date-time"},
        "urls": {
            "type": "object",
            "properties": {name: {"type": "string"} for name in ("get", "cancel", "stream")},
        },
    },
}

REPLICATE_ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["title", "detail", "status", "error", "trace_id"],
    "properties": {
        "title": {"type": "string"},
        "detail": {"type": "string"},
        "status": {"type": "integer"},
        "error": ERROR["properties"]["error"],
        "trace_id": ERROR["properties"]["trace_id"],
    },
}

PREFER = {
    "name": "Prefer",
    "in": "header",
    "required": False,
    "description": "`wait` or `wait=N` (1-60): hold the request until the prediction ends or N s "
    "pass; one still running then answers `starting`.",
    "schema": {"type": "string"},
}
PREDICTION_ID = {"name": "prediction_id", "in": "path", "required": True, "schema": {"type": "string"}}


def openapi(spec: DocSpec) -> Fragment:
    """Creating, reading, listing, canceling and streaming predictions, and the signing secret."""
    created = {
        "201": {"description": "Created", "content": {"application/json": {"schema": ref("Prediction")}}}
    }
    one = {"200": {"description": "Success", "content": {"application/json": {"schema": ref("Prediction")}}}}

    def create(summary: str, parameters: list[dict[str, Any]], body: dict[str, Any]) -> dict[str, Any]:
        return {
            "post": operation(
                summary,
                created | errors(400, 401, 403, 404, 409, 413, 429, 500, 503, schema="ReplicateError"),
                description="The webhook gets the prediction when it completes (`completed`, or no "
                "filter), and with the filter also when the run starts (`start`) and as it logs "
                "(`logs`, at most one per 500 ms), signed per Standard Webhooks; the output comes "
                "with `completed`. A filter without `completed` sends none.",
                parameters=[*parameters, PREFER],
                body=body,
            )
        }

    webhook = {
        "webhook": {"type": "string", "format": "uri"},
        "webhook_events_filter": {"type": "array", "items": {"type": "string", "enum": list(WEBHOOK_EVENTS)}},
    }
    model_body: dict[str, Any] = {
        "type": "object",
        "required": ["input"],
        "properties": {"input": {"oneOf": spec.input_refs()}, **webhook},
    }
    version_body = {
        **model_body,
        "required": ["version", "input"],
        "properties": {"version": {"type": "string", "description": "The model, as `owner/name`."}}
        | model_body["properties"],
    }
    owner_name = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in ("owner", "name")
    ]
    page = {
        "type": "object",
        "required": ["previous", "next", "results"],
        "properties": {
            "previous": {"type": ["string", "null"]},
            "next": {"type": ["string", "null"], "description": "The next page's URL."},
            "results": {"type": "array", "items": ref("Prediction")},
        },
    }
    read_errors = errors(401, 403, 404, 429, 500, 503, schema="ReplicateError")
    paths = {
        "/v1/models/{owner}/{name}/predictions": create(
            "Create a prediction of a model (Replicate)", owner_name, model_body
        ),
        PREDICTIONS: create("Create a prediction of a version (Replicate)", [], version_body)
        | {
            "get": operation(
                "The key's predictions, newest first (Replicate)",
                {"200": {"description": "Success", "content": {"application/json": {"schema": page}}}}
                | errors(400, 401, 403, 429, schema="ReplicateError"),
                parameters=[{"name": "cursor", "in": "query", "schema": {"type": "string"}}],
            )
        },
        STATUS_PREFIX + "{prediction_id}": {
            "get": operation("A prediction (Replicate)", one | read_errors, parameters=[PREDICTION_ID])
        },
        STATUS_PREFIX + "{prediction_id}/cancel": {
            "post": operation(
                "Cancel a prediction (Replicate)", one | read_errors, parameters=[PREDICTION_ID]
            )
        },
        STATUS_PREFIX + "{prediction_id}/stream": {
            "get": operation(
                "Server-Sent Events: `logs`, `output`, `error`, `done` (Replicate)",
                {"200": {"description": "An event stream", "content": {"text/event-stream": {}}}}
                | read_errors,
                parameters=[PREDICTION_ID],
            )
        },
        "/v1/webhooks/default/secret": {
            "get": operation(
                "The key's webhook signing secret (Replicate)",
                {
                    "200": {
                        "description": "Success",
                        "content": {
                            "application/json": {
                                "schema": {"type": "object", "properties": {"key": {"type": "string"}}}
                            }
                        },
                    }
                }
                | errors(401, 403, 429, schema="ReplicateError"),
            )
        },
    }
    return Fragment(paths, {"Prediction": PREDICTION, "ReplicateError": REPLICATE_ERROR})
