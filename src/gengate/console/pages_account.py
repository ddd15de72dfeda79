"""A key's account: Usage (balance, the ledger, spend and tasks per day and model as charts) and
Webhooks (the signing secret, hidden until revealed; rotate; send a signed test event)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gengate.api.routing import route
from gengate.console.charts import daily_chart
from gengate.console.sessions import Viewer
from gengate.console.test_event import TestResult, send_test_event
from gengate.console.web import PageGroup, Pages, form_of, see_other
from gengate.domain.clock import now_ms
from gengate.domain.errors import BadRequest
from gengate.services.insights import DAY_MS, Insights

CHART_DAYS = 14
LEDGER_PAGE = 50


class AccountPages(PageGroup):
    def __init__(self, pages: Pages) -> None:
        super().__init__(pages)
        self.insights = Insights(pages.ctx.tasks.store)

    @route("/console/usage", "GET")
    async def usage(self, request: Request, viewer: Viewer) -> Response:
        assert viewer.key is not None
        cursor = request.query_params.get("cursor")
        if cursor is not None and not (cursor.isascii() and cursor.isdigit() and len(cursor) < 19):
            raise BadRequest("`cursor` must be a ledger entry id.")
        entries = await self.ctx.keys.usage(viewer.key, int(cursor) if cursor else None, LEDGER_PAGE)
        rows = await self.insights.usage_by_day(viewer.key, CHART_DAYS)
        today = now_ms() // DAY_MS
        days = list(range(today - CHART_DAYS + 1, today + 1))
        return self.pages.render(
            "usage.html",
            viewer,
            balance=await self.ctx.keys.balance(viewer.key),
            entries=entries,
            next_cursor=str(entries[-1].id) if len(entries) == LEDGER_PAGE else None,
            spend=daily_chart("spend", "Credits spent per day", rows, days, lambda r: r.spent),
            counts=daily_chart("tasks", "Tasks per day", rows, days, lambda r: r.tasks),
            totals={"tasks": sum(r.tasks for r in rows), "spent": sum(r.spent for r in rows)},
        )

    async def _webhooks(
        self, viewer: Viewer, *, revealed: bool = False, result: TestResult | None = None, url: str = ""
    ) -> Response:
        assert viewer.key is not None
        secret = self.ctx.keys.webhook_secret(viewer.key) if revealed else None
        return self.pages.render("webhooks.html", viewer, secret=secret, result=result, url=url)

    @route("/console/webhooks", "GET")
    async def webhooks(self, _request: Request, viewer: Viewer) -> Response:
        return await self._webhooks(viewer)

    @route("/console/webhooks/reveal", "POST")
    async def reveal(self, _request: Request, viewer: Viewer) -> Response:
        return await self._webhooks(viewer, revealed=True)

    @route("/console/webhooks/rotate", "POST")
    async def rotate(self, _request: Request, viewer: Viewer) -> Response:
        assert viewer.key is not None
        await self.ctx.keys.rotate_webhook_secret(viewer.key)
        return see_other("/console/webhooks?rotated=1")

    @route("/console/webhooks/test", "POST")
    async def test(self, request: Request, viewer: Viewer) -> Response:
        assert viewer.key is not None
        await self.ctx.limit_rate(viewer.key, request.scope)
        url = (await form_of(request)).get("url", "").strip()
        if not url:
            raise BadRequest("Enter the URL to send the test event to.")
        # The key as it is now: a rotation a moment ago must sign this event already.
        key = await self.ctx.keys.check_key(viewer.key.id)
        result = await send_test_event(
            url, self.ctx.keys.webhook_secret(key), key.id, self.ctx.tasks.callback_policy
        )
        return await self._webhooks(viewer, result=result, url=url)
