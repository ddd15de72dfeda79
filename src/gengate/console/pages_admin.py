"""The operator's pages (admin key only): Keys (create, shown once; disable, expire, models,
credits, rate limit, concurrency; search), Models and providers (load, throughput, run-time
percentiles, circuits), and Health (the facts of `/readyz` and `/metrics` on one page)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gengate.api.routing import route
from gengate.console.sessions import Viewer
from gengate.console.web import PageGroup, Pages, form_of, see_other
from gengate.domain.clock import now_ms
from gengate.domain.errors import BadRequest
from gengate.domain.keys import ApiKey, KeyChanges
from gengate.domain.ledger import MAX_CREDITS
from gengate.files.local import LocalFileStore
from gengate.providers.fallback import circuit_states
from gengate.services.insights import Insights

STORE_TIMEOUT_S = 2.0
DAY_MS = 86_400_000


def _int(form: dict[str, str], name: str, low: int, high: int) -> int | None:
    raw = form.get(name, "").strip()
    if not raw:
        return None
    if not (raw.lstrip("-").isdigit() and len(raw) < 18) or not low <= int(raw) <= high:
        raise BadRequest(f"{name.replace('_', ' ').capitalize()}: enter a whole number from {low} to {high}.")
    return int(raw)


def matches(key: ApiKey, query: str) -> bool:
    query = query.strip().lower()
    return not query or any(query in text.lower() for text in (key.id, key.name, key.prefix))


class AdminPages(PageGroup):
    def __init__(self, pages: Pages) -> None:
        super().__init__(pages)
        self.insights = Insights(pages.ctx.tasks.store)

    # -- keys ------------------------------------------------------------------------------------
    @route("/console/keys", "GET", admin=True)
    async def keys(self, request: Request, viewer: Viewer) -> Response:
        query = request.query_params.get("q", "")
        keys = [k for k in await self.ctx.keys.list() if matches(k, query)]
        keys.sort(key=lambda k: k.created_at, reverse=True)
        models = [spec.id for spec in self.ctx.catalogue]
        return self.pages.render("keys.html", viewer, keys=keys, q=query, models=models, now=now_ms())

    def _models(self, request_models: list[str]) -> tuple[str, ...] | None:
        unknown = [m for m in request_models if m not in self.ctx.catalogue]
        if unknown:
            raise BadRequest(f"Unknown models: {', '.join(unknown)}.")
        return tuple(request_models) if request_models else None

    @route("/console/keys", "POST", admin=True)
    async def create(self, request: Request, viewer: Viewer) -> Response:
        form = await form_of(request)
        name = form.get("name", "").strip()
        if not name or len(name) > 200:
            raise BadRequest("Name: enter 1 to 200 characters.")
        days = _int(form, "expires_days", 1, 36_500)
        models = [m.strip() for m in form.get("models", "").split(",") if m.strip()]
        key, secret = await self.ctx.keys.create(
            name,
            models=self._models(models),
            expires_at=now_ms() + days * DAY_MS if days else None,
            credits=_int(form, "credits", 0, MAX_CREDITS),
            rate_limit=form.get("rate_limit", "").strip() or None,
            max_concurrent=_int(form, "max_concurrent", 1, 1_000_000),
        )
        return self.pages.render("key_created.html", viewer, key=key, secret=secret)

    @route("/console/keys/{key_id}", "GET", admin=True)
    async def key(self, request: Request, viewer: Viewer) -> Response:
        key = await self.ctx.tasks.store.get_key(request.path_params["key_id"])
        if key is None:
            raise BadRequest("No such key.", status=404)
        models = [spec.id for spec in self.ctx.catalogue]
        return self.pages.render("key.html", viewer, key=key, models=models, now=now_ms())

    @route("/console/keys/{key_id}", "POST", admin=True)
    async def update(self, request: Request, viewer: Viewer) -> Response:
        """One change per form: `action` says which."""
        key_id = request.path_params["key_id"]
        form = await form_of(request)
        action = form.get("action", "")
        changes: KeyChanges | None = None
        if action == "disable":
            changes = KeyChanges(disabled=True)
        elif action == "enable":
            changes = KeyChanges(disabled=False)
        elif action == "expire":
            days = _int(form, "expires_days", 0, 36_500)
            changes = KeyChanges(expires_at=None if days is None else now_ms() + days * DAY_MS)
        elif action == "models":
            changes = KeyChanges(
                models=self._models([m.strip() for m in form.get("models", "").split(",") if m.strip()])
            )
        elif action == "credits_set":
            changes = KeyChanges(credits=_int(form, "credits", 0, MAX_CREDITS))
        elif action == "credits_add":
            amount = _int(form, "amount", -MAX_CREDITS, MAX_CREDITS)
            if amount is None:
                raise BadRequest("Amount: enter a whole number.")
            await self.ctx.keys.add_credits(key_id, amount)
        elif action == "limits":
            changes = KeyChanges(
                rate_limit=form.get("rate_limit", "").strip() or None,
                max_concurrent=_int(form, "max_concurrent", 1, 1_000_000),
            )
        else:
            raise BadRequest("Unknown action.")
        if changes is not None:
            await self.ctx.keys.update(key_id, changes)
        return see_other(f"/console/keys/{key_id}?done={action}")

    # -- models and health -------------------------------------------------------------------------
    @route("/console/models", "GET", admin=True)
    async def models(self, _request: Request, viewer: Viewer) -> Response:
        specs = list(self.ctx.catalogue)
        stats = await self.insights.model_stats([spec.id for spec in specs])
        longest = max([s.p95_ms or 0 for s in stats] + [1])
        deepest = max([s.pending + s.processing for s in stats] + [1])
        return self.pages.render(
            "models.html",
            viewer,
            specs={spec.id: spec for spec in specs},
            stats=stats,
            longest=longest,
            deepest=deepest,
            circuits=sorted(circuit_states(self.ctx.providers).items()),
        )

    async def _store_answers(self) -> bool:
        try:
            async with asyncio.timeout(STORE_TIMEOUT_S):
                await self.ctx.tasks.store.get_task("task_console_health")
        except Exception:  # any failure means "not reachable", shown as such
            return False
        return True

    @route("/console/health", "GET", admin=True)
    async def health(self, _request: Request, viewer: Viewer) -> Response:
        store_ok = await self._store_answers()
        workers = await self.insights.workers() if store_ok else []
        deliveries = await self.insights.deliveries() if store_ok else None
        registry = self.ctx.metrics.registry
        attempts = {
            outcome: registry.get_sample_value("gengate_webhook_attempts_total", {"outcome": outcome}) or 0
            for outcome in ("delivered", "retry", "failed")
        }
        files: dict[str, Any] = {"kind": type(self.ctx.files).__name__}
        if isinstance(self.ctx.files, LocalFileStore):
            folder = self.ctx.files.staging_path("task_" + "x" * 22, 0).parent.parent
            with contextlib.suppress(OSError):
                files["free"] = shutil.disk_usage(folder).free
            files["folder"] = str(folder)
        return self.pages.render(
            "health.html",
            viewer,
            store_ok=store_ok,
            store_kind=type(self.ctx.tasks.store).__name__,
            workers=workers,
            deliveries=deliveries,
            attempts=attempts,
            files=files,
            circuits=sorted(circuit_states(self.ctx.providers).items()),
            now=now_ms(),
        )
