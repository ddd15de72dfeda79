"""Tasks: the key's tasks newest first (filtered, refreshed live by htmx), and a task's page
with its input, times, cost, outcome, callback deliveries, "deliver again" and cancel."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gengate.api.routing import route
from gengate.api.tasks_api import decode_cursor, encode_cursor
from gengate.console.sessions import Viewer
from gengate.console.views import task_view
from gengate.console.web import PageGroup, origin_of, see_other
from gengate.domain.clock import now_ms
from gengate.domain.deliveries import DeliveryState
from gengate.domain.errors import BadRequest
from gengate.domain.states import TaskState
from gengate.store.base import TaskQuery

PAGE = 50
#: The time filter's choices: label and how far back (ms); None is all time.
PERIODS = {"hour": 3_600_000, "day": 86_400_000, "week": 7 * 86_400_000, "all": None}


class TaskPages(PageGroup):
    async def _listing(self, request: Request, viewer: Viewer, template: str) -> Response:
        assert viewer.key is not None
        params = request.query_params
        state = params.get("state") or None
        if state is not None and state not in {s.value for s in TaskState}:
            raise BadRequest("Pick a state from the list.")
        period = params.get("period") or "all"
        if period not in PERIODS:
            raise BadRequest("Pick a period from the list.")
        back = PERIODS[period]
        query = TaskQuery(
            state=state,
            model=params.get("model") or None,
            since=now_ms() - back if back is not None else None,
            before=decode_cursor(params.get("cursor")),
            limit=PAGE,
        )
        tasks = await self.ctx.tasks.list(viewer.key, query)
        filters = {"state": state or "", "model": query.model or "", "period": period}
        return self.pages.render(
            template,
            viewer,
            tasks=tasks,
            filters=filters,
            states=[s.value for s in TaskState],
            models=[spec.id for spec in self.ctx.catalogue],
            periods=list(PERIODS),
            cursor=params.get("cursor") or "",
            next_cursor=encode_cursor(tasks[-1]) if len(tasks) == PAGE else None,
        )

    @route("/console/tasks", "GET")
    async def list(self, request: Request, viewer: Viewer) -> Response:
        return await self._listing(request, viewer, "tasks.html")

    @route("/console/tasks/rows", "GET")
    async def rows(self, request: Request, viewer: Viewer) -> Response:
        return await self._listing(request, viewer, "_task_rows.html")

    async def _task(self, request: Request, viewer: Viewer, template: str) -> Response:
        assert viewer.key is not None
        task, deliveries = await self.ctx.tasks.deliveries(viewer.key, request.path_params["task_id"])
        view = task_view(task, self.ctx)
        settled = view.finished and all(d.state is not DeliveryState.PENDING for d in deliveries)
        return self.pages.render(
            template,
            viewer,
            task=view,
            deliveries=deliveries,
            settled=settled,
            media_origins=[origin_of(p.url) for p in view.previews],
        )

    @route("/console/tasks/{task_id}", "GET")
    async def page(self, request: Request, viewer: Viewer) -> Response:
        return await self._task(request, viewer, "task.html")

    @route("/console/tasks/{task_id}/live", "GET")
    async def live(self, request: Request, viewer: Viewer) -> Response:
        return await self._task(request, viewer, "_task_live.html")

    @route("/console/tasks/{task_id}/cancel", "POST")
    async def cancel(self, request: Request, viewer: Viewer) -> Response:
        assert viewer.key is not None
        await self.ctx.limit_rate(viewer.key, request.scope)
        task, _changed = await self.ctx.tasks.cancel(viewer.key, request.path_params["task_id"])
        return see_other(f"/console/tasks/{task.id}")

    @route("/console/tasks/{task_id}/redeliver", "POST")
    async def redeliver(self, request: Request, viewer: Viewer) -> Response:
        """Send the task's latest callback again, as `POST /api/v1/tasks/{id}/redeliver` does."""
        assert viewer.key is not None
        await self.ctx.limit_rate(viewer.key, request.scope)
        task, _latest = await self.ctx.tasks.redeliver(viewer.key, request.path_params["task_id"])
        return see_other(f"/console/tasks/{task.id}")
