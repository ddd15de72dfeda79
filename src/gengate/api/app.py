"""Assembling the ASGI application from the route modules."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from gengate.api.account import AccountRoutes
from gengate.api.admin import AdminRoutes
from gengate.api.apixo import ApixoRoutes
from gengate.api.callbacks import CallbackRoutes
from gengate.api.context import ApiContext
from gengate.api.docs import DocsRoutes
from gengate.api.errors import EXCEPTION_HANDLERS
from gengate.api.fal import FalRoutes
from gengate.api.guard import RequestGuard
from gengate.api.hot_lane import AppHotLane
from gengate.api.hotpath import HotPath
from gengate.api.kie import KieRoutes
from gengate.api.openai_images import OpenAIImagesRoutes
from gengate.api.ops import FileRoutes, MetricsRoute, ReadyRoute, healthz
from gengate.api.replicate import ReplicateRoutes
from gengate.api.tasks_api import TasksApi
from gengate.api.trace import TraceMiddleware
from gengate.api.upstream_hooks import UpstreamHookRoutes
from gengate.api.xhuo import XhuoRoutes
from gengate.console import console_routes
from gengate.files.local import LocalFileStore
from gengate.observability.requests import RequestLog


def build_app(
    ctx: ApiContext,
    lifespan: Callable[[Starlette], AbstractAsyncContextManager[Any]] | None = None,
) -> ASGIApp:
    apixo = ApixoRoutes(ctx)
    kie = KieRoutes(ctx)
    replicate = ReplicateRoutes(ctx)
    routes: list[BaseRoute] = [
        *apixo.routes(),
        *kie.routes(),
        *XhuoRoutes(ctx).routes(),
        *replicate.routes(),
        *OpenAIImagesRoutes(ctx).routes(),
        *FalRoutes(ctx).routes(),
        *CallbackRoutes(ctx).routes(),
        *AccountRoutes(ctx).routes(),
        *TasksApi(ctx).routes(),
        *AdminRoutes(ctx).routes(),
        *UpstreamHookRoutes(ctx.upstream_hooks).routes(),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", _ready_route(ctx).endpoint, methods=["GET"]),
        Route("/metrics", MetricsRoute(ctx.metrics).endpoint, methods=["GET"]),
    ]
    if isinstance(ctx.files, LocalFileStore):
        routes += FileRoutes(ctx.files).routes()
    routes += DocsRoutes(ctx).routes()
    routes += console_routes(ctx)  # `/` and `/console...`
    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    app.router.redirect_slashes = False  # a wrong path is `no_api`, not a redirect
    guarded = RequestGuard(app, ctx.max_body_bytes)
    hot_routes = [*apixo.hot_routes(), *kie.hot_routes(), *replicate.hot_routes()]
    hot = HotPath(TraceMiddleware(guarded), hot_routes, guard=guarded)
    requests = RequestLog(hot, ctx.request_observers, access_log=ctx.access_log)
    requests.hot_lane = AppHotLane(hot, requests)
    return requests


def _ready_route(ctx: ApiContext) -> ReadyRoute:
    return ReadyRoute(
        ctx.tasks.store, ctx.catalogue, ctx.providers, disk=ctx.disk_space, writes=ctx.write_health
    )
