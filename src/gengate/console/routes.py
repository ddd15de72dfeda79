"""The console's routes, assembled: its pages, and its packaged assets at `/console/static`."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from starlette.routing import BaseRoute, Mount

from gengate.api.assets import CachedAssets
from gengate.api.context import ApiContext
from gengate.console.pages_account import AccountPages
from gengate.console.pages_admin import AdminPages
from gengate.console.pages_auth import AuthPages
from gengate.console.pages_playground import PlaygroundPages
from gengate.console.pages_tasks import TaskPages
from gengate.console.sessions import SessionService
from gengate.console.web import Pages
from gengate.services.ratelimit import RateLimiter


def static_dir() -> Path:
    return Path(str(resources.files("gengate.console") / "static"))


def console_routes(ctx: ApiContext) -> list[BaseRoute]:
    limiter = ctx.rate_limiter or RateLimiter()
    sessions = SessionService(
        ctx.tasks.store,
        ctx.keys,
        limiter,
        ttl_s=ctx.console_session_ttl_s,
        signin_limit=ctx.console_signin_limit,
    )
    pages = Pages(ctx, sessions)
    return [
        *AuthPages(pages).routes(),
        *PlaygroundPages(pages).routes(),
        *TaskPages(pages).routes(),
        *AccountPages(pages).routes(),
        *AdminPages(pages).routes(),
        Mount("/console/static", app=CachedAssets(static_dir())),
    ]
