"""The fal queue routes under `/fal`; bodies in :mod:`gengate.dialects.fal`.

`FAL_QUEUE_RUN_HOST=<host>:<port>/fal` points `fal-client` here (it always speaks https: serve
with a certificate). It submits to `/fal/<owner>/<alias>[/<path>]` and reads
`/fal/<owner>/<alias>/requests/<id>` (`/status`, `/status/stream`, `/cancel`), dropping any
sub-path. A model `demo-image` is the app `<owner>/demo-image` (the owner is the one Replicate
names use, default `gengate`); a model whose id has a slash is its own app. A sub-path names the
model `<owner>/<alias>/<path>` when there is one, else a mode of the app's model.

- Auth: `Authorization: Key <key>` (fal-client's) or `Bearer <key>`.
- `X-Fal-Queue-Priority`: `normal`, or `low`: claimed after every normal request of the model.
- `X-Fal-Request-Timeout`: seconds (over 1) a request may wait in the queue; one still queued
  then is canceled (failed `CANCELED`, refunded), as fal drops it. Once running, the model's own
  timeout applies. The timer lives in the process that took the request (a restart forgets it),
  and a request claimed at that very instant may be canceled as it starts.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gengate.api.body import read_json_object
from gengate.api.context import ApiContext
from gengate.api.hotpath import header_value
from gengate.api.responses import JSONResponse
from gengate.api.routing import ApiRoutes, route
from gengate.api.trace import trace_id_of
from gengate.dialects.fal import (
    PRIORITIES,
    STATUS_NAMES,
    RequestFailed,
    app_id,
    queue_urls,
    result_body,
    status_body,
    submitted,
)
from gengate.domain.dialect import Dialect
from gengate.domain.errors import BadRequest, ModelNotFound, TaskNotFound
from gengate.domain.keys import ApiKey
from gengate.domain.states import TaskState
from gengate.domain.task import Task

log = logging.getLogger(__name__)

PREFIX = "/fal"
REQUEST_PATH = PREFIX + "/{owner}/{alias}/requests/{request_id}"
#: A comment line this often keeps proxies from closing a quiet status stream.
KEEPALIVE_S = 15.0
#: The longest queue timeout taken (a day): past it the header is refused, not clamped.
MAX_REQUEST_TIMEOUT_S = 86_400.0
_TRUE, _FALSE = frozenset({"1", "true"}), frozenset({"0", "false", ""})


class FalRoutes(ApiRoutes):
    def __init__(self, ctx: ApiContext) -> None:
        super().__init__(ctx)
        #: Queue-timeout cancels in flight, held so they are not collected half done.
        self._expiring: set[asyncio.Future[None]] = set()

    # -- submit ----------------------------------------------------------------------------
    @route(PREFIX + "/{owner}/{alias}", "POST")
    @route(PREFIX + "/{owner}/{alias}/{path:path}", "POST")
    async def submit(self, request: Request) -> Response:
        """The body is the model's input; `?fal_webhook=URL` posts the result there when it ends."""
        ctx = self.ctx
        key = await self._authenticate(request)
        params = request.path_params
        model, mode = self._model(params["owner"], params["alias"], params.get("path", ""))
        body = await read_json_object(request, ctx.max_body_bytes)
        priority = _priority(request.headers.get("x-fal-queue-priority"))
        timeout_s = _request_timeout(request.headers.get("x-fal-request-timeout"))
        webhook = request.query_params.get("fal_webhook")
        if webhook is not None and not webhook.strip():
            raise BadRequest("`fal_webhook` is empty: give the URL to post the result to, or leave it out.")
        task = await ctx.tasks.submit(
            key,
            model,
            {**body, "mode": mode} if mode is not None and "mode" not in body else body,
            request=body,
            request_type="callback" if webhook else "async",
            callback_url=webhook,
            trace_id=trace_id_of(request.scope),
            dialect=Dialect.FAL,
            idempotency_key=request.headers.get("idempotency-key"),
            priority=priority,
        )
        if timeout_s is not None and task.state is TaskState.PENDING:
            asyncio.get_running_loop().call_later(timeout_s, self._expire, key, task.id)
        queued = submitted(task, self._urls(request, task), await ctx.tasks.queue_position(task))
        return _answer(queued, task)

    def _model(self, owner: str, alias: str, path: str) -> tuple[str, str | None]:
        """The model an app (and sub-path) names, and the mode the sub-path picks (None: none)."""
        catalogue = self.ctx.catalogue
        app = f"{owner}/{alias}"
        path = path.strip("/")
        if path and f"{app}/{path}" in catalogue:
            return f"{app}/{path}", None
        if app in catalogue:
            model = app
        elif owner == self._owner and alias in catalogue:
            model = alias
        else:
            raise ModelNotFound(f"No model answers to the fal app '{app}'.")
        if not path:
            return model, None
        modes = catalogue.get(model).modes
        if path not in modes:
            raise ModelNotFound(
                f"The fal app '{app}' has no endpoint '{path}'; its modes are: {', '.join(modes)}."
            )
        return model, path

    def _expire(self, key: ApiKey, task_id: str) -> None:
        expiry = asyncio.ensure_future(self._cancel_if_queued(key, task_id))
        self._expiring.add(expiry)
        expiry.add_done_callback(self._expiring.discard)

    async def _cancel_if_queued(self, key: ApiKey, task_id: str) -> None:
        try:
            task = await self.ctx.tasks.get(key, task_id)
            if task.state is TaskState.PENDING:
                await self.ctx.tasks.cancel(key, task_id)
        except Exception as exc:  # a timer outlives requests: the store may be closing
            log.warning("could not cancel fal request %s at its queue timeout: %r", task_id, exc)

    # -- reading a request -----------------------------------------------------------------
    @route(REQUEST_PATH + "/status", "GET")
    async def status(self, request: Request) -> Response:
        """`?logs=1` (or `true`) adds the run's log lines; `logs` is null without it."""
        _, task = await self._task(request)
        return _answer(await self._status(request, task), task)

    @route(REQUEST_PATH + "/status/stream", "GET")
    async def status_stream(self, request: Request) -> Response:
        """Server-Sent Events: the status now, then one per state or progress change, until
        `COMPLETED`."""
        _, task = await self._task(request)
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no", "x-fal-request-id": task.id}
        return StreamingResponse(self._events(request, task), media_type="text/event-stream", headers=headers)

    async def _events(self, request: Request, task: Task) -> AsyncIterator[bytes]:
        async for current in self.ctx.tasks.changes(task, KEEPALIVE_S):
            if current is None:
                yield b": keep-alive\n\n"
            else:
                yield b"data: %s\n\n" % orjson.dumps(await self._status(request, current))

    @route(REQUEST_PATH, "GET")
    async def result(self, request: Request) -> Response:
        """A completed request's result; a failed one's error; 400 while it is not done."""
        _, task = await self._task(request)
        if task.state is TaskState.SUCCESS:
            return _answer(result_body(task, self.ctx.links), task)
        if task.state is TaskState.FAILED:
            raise RequestFailed(task)
        raise BadRequest(
            "Request is still in progress; poll its status_url.",
            extra={"request_id": task.id, "status": STATUS_NAMES[task.state]},
        )

    @route(REQUEST_PATH + "/cancel", "PUT")
    async def cancel(self, request: Request) -> Response:
        """202 `CANCELLATION_REQUESTED` (a queued request ends at once, a running one when its
        worker stops); 400 `ALREADY_COMPLETED` for one that had ended."""
        key, task = await self._task(request)
        if task.state.is_terminal():
            raise BadRequest(
                f"Request '{task.id}' has already completed; nothing to cancel.",
                extra={"request_id": task.id, "status": "ALREADY_COMPLETED"},
            )
        await self.ctx.tasks.cancel(key, task.id)
        return _answer({"status": "CANCELLATION_REQUESTED"}, task, status_code=202)

    async def _status(self, request: Request, task: Task) -> dict[str, Any]:
        with_logs = _flag(request.query_params.get("logs"), "logs")
        logs = await self.ctx.tasks.store.task_logs(task.id) if with_logs else None
        position = await self.ctx.tasks.queue_position(task)
        return status_body(task, self._urls(request, task), queue_position=position, logs=logs)

    async def _task(self, request: Request) -> tuple[ApiKey, Task]:
        """The key's request, named under its own app; another key's, or another app's, is not found."""
        key = await self._authenticate(request)
        params = request.path_params
        task = await self.ctx.tasks.get(key, params["request_id"])
        app = f"{params['owner']}/{params['alias']}"
        if app_id(task.model, self._owner) != app:
            raise TaskNotFound(
                f"Request '{task.id}' belongs to the fal app '{app_id(task.model, self._owner)}', "
                f"not '{app}'."
            )
        return key, task

    # -- shared ----------------------------------------------------------------------------
    async def _authenticate(self, request: Request) -> ApiKey:
        """fal-client's `Authorization: Key <key>`, or the usual `Bearer <key>`."""
        authorization = header_value(request.scope, b"authorization")
        if authorization is not None:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() == "key":
                authorization = "Bearer " + token
        return await self.ctx.authenticate(request.scope, authorization)

    def _urls(self, request: Request, task: Task) -> dict[str, str]:
        """The request's URLs on the address the client reached (https when served so)."""
        base = str(request.base_url).rstrip("/")
        return queue_urls(base, app_id(task.model, self._owner), task.id)

    @property
    def _owner(self) -> str:
        return self.ctx.links.model_owner


def _answer(body: dict[str, Any], task: Task, status_code: int = 200) -> Response:
    """fal names the request on every answer about it (its client reads a 5xx without the
    header as an ingress error to retry)."""
    return JSONResponse(body, status_code=status_code, headers={"x-fal-request-id": task.id})


def _flag(raw: str | None, name: str) -> bool:
    """A boolean query parameter: `1`/`true` or `0`/`false` (fal-client sends `true`/`false`)."""
    value = (raw or "").lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadRequest(f"`{name}` must be true or false (or 1 or 0).")


def _priority(raw: str | None) -> int:
    if raw is None:
        return 0
    try:
        return PRIORITIES[raw.strip().lower()]
    except KeyError:
        raise BadRequest(f"X-Fal-Queue-Priority must be one of: {', '.join(PRIORITIES)}.") from None


def _request_timeout(raw: str | None) -> float | None:
    """Seconds a request may wait in the queue, as fal-client sends them (a number over 1)."""
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 1 < value <= MAX_REQUEST_TIMEOUT_S:
        raise BadRequest(
            f"X-Fal-Request-Timeout must be a number of seconds over 1, at most {MAX_REQUEST_TIMEOUT_S:g}."
        )
    return value
