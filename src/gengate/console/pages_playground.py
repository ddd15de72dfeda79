"""The playground: pick a model, fill the form made from its input schema, submit through the
same `TaskService.submit` as the API (same validation, limits, credits, moderation), watch the
task live over Server-Sent Events from this origin, see its result, copy the request as code."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gengate.api.routing import route
from gengate.api.trace import trace_id_of
from gengate.console import forms
from gengate.console.sessions import Viewer
from gengate.console.snippets import snippets
from gengate.console.views import task_view
from gengate.console.web import PageGroup, form_of, origin_of, see_other
from gengate.dialects.apixo import status_data
from gengate.domain.catalogue import ModelSpec
from gengate.domain.errors import BadRequest, GatewayError
from gengate.domain.inputs import input_json_schema
from gengate.domain.keys import ApiKey
from gengate.domain.states import TaskState
from gengate.domain.task import Task

#: While a task waits in the queue its position changes without an event of its own: look again.
QUEUE_REFRESH_S = 2.0
KEEPALIVE_S = 15.0


class PlaygroundPages(PageGroup):
    def _models(self, key: ApiKey) -> list[ModelSpec]:
        return [spec for spec in self.ctx.catalogue if key.models is None or spec.id in key.models]

    def _pick(self, key: ApiKey, model: str | None, mode: str | None) -> tuple[ModelSpec | None, str]:
        models = self._models(key)
        spec = next((s for s in models if s.id == model), models[0] if models else None)
        if spec is None:
            return None, ""
        return spec, mode if mode in spec.modes else spec.modes[0]

    @route("/console/playground", "GET")
    async def playground(self, request: Request, viewer: Viewer) -> Response:
        assert viewer.key is not None
        params = request.query_params
        task: Task | None = None
        if params.get("task"):
            task = await self.ctx.tasks.get(viewer.key, params["task"])
        spec, mode = self._pick(
            viewer.key,
            params.get("model") or (task.model if task else None),
            task.mode if task else params.get("mode"),
        )
        values = task.input if task is not None else {}
        callback_url = task.callback_url if task else None
        return self._page(
            request, viewer, spec=spec, mode=mode, values=values, task=task, callback_url=callback_url
        )

    def _page(
        self,
        request: Request,
        viewer: Viewer,
        *,
        spec: ModelSpec | None,
        mode: str,
        values: dict[str, Any],
        task: Task | None = None,
        error: GatewayError | None = None,
        callback_url: str | None = None,
    ) -> Response:
        assert viewer.key is not None
        fields = forms.fields_of(input_json_schema(spec.inputs[mode])) if spec is not None else []
        view = task_view(task, self.ctx) if task is not None else None
        base = str(request.base_url)
        code = snippets(base, spec.id, {"mode": mode, **values}, callback_url) if task and spec else []
        return self.pages.render(
            "playground.html",
            viewer,
            status=error.status if error is not None else 200,
            models=self._models(viewer.key),
            spec=spec,
            mode=mode,
            fields=fields,
            values=values,
            task=view,
            error=error,
            snippets=code,
            callback_url=callback_url or "",
            media_origins=[origin_of(p.url) for p in view.previews] if view else [],
        )

    @route("/console/playground", "POST")
    async def submit(self, request: Request, viewer: Viewer) -> Response:
        assert viewer.key is not None
        form = await form_of(request)
        spec, mode = self._pick(viewer.key, form.get("model"), form.get("mode"))
        if spec is None:
            raise BadRequest("This key may use no model.")
        fields = forms.fields_of(input_json_schema(spec.inputs[mode]))
        callback_url = form.get("callback_url", "").strip() or None
        values: dict[str, Any] = {}
        try:
            task_input = forms.input_of(fields, form, mode)
            values = task_input
            await self.ctx.limit_rate(viewer.key, request.scope)
            body: dict[str, Any] = {
                "request_type": "callback" if callback_url else "async",
                "input": task_input,
            }
            if callback_url:
                body["callback_url"] = callback_url
            task = await self.ctx.tasks.submit(
                viewer.key,
                spec.id,
                task_input,
                request=body,
                request_type=body["request_type"],
                callback_url=callback_url,
                trace_id=trace_id_of(request.scope),
            )
        except GatewayError as exc:
            return self._page(
                request, viewer, spec=spec, mode=mode, values=values, error=exc, callback_url=callback_url
            )
        return see_other(f"/console/playground?task={task.id}")

    @route("/console/tasks/{task_id}/events", "GET")
    async def events(self, request: Request, viewer: Viewer) -> Response:
        """The task's status now, then on every change (and the queue position while pending),
        ending after its terminal state: the API's SSE, for the session's key."""
        assert viewer.key is not None
        task = await self.ctx.tasks.get(viewer.key, request.path_params["task_id"])
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(self._stream(task), media_type="text/event-stream", headers=headers)

    async def _status(self, task: Task) -> bytes:
        data = status_data(task, self.ctx.links, await self.ctx.tasks.queue_position(task))
        return b"event: status\ndata: %s\n\n" % orjson.dumps(data)

    async def _stream(self, task: Task) -> AsyncIterator[bytes]:
        yield await self._status(task)
        while not task.state.is_terminal():
            pending = task.state is TaskState.PENDING
            current = await self.ctx.tasks.wait_for_change(task, QUEUE_REFRESH_S if pending else KEEPALIVE_S)
            if (current.state, current.progress) == (task.state, task.progress) and not pending:
                yield b": keep-alive\n\n"
                continue
            task = current
            yield await self._status(task)

    @route("/console/tasks/{task_id}/result", "GET")
    async def result(self, request: Request, viewer: Viewer) -> Response:
        """The task's outcome as HTML, for the playground to put in place once it ends."""
        assert viewer.key is not None
        task = await self.ctx.tasks.get(viewer.key, request.path_params["task_id"])
        view = task_view(task, self.ctx)
        return self.pages.render(
            "_outcome.html", viewer, task=view, media_origins=[origin_of(p.url) for p in view.previews]
        )
