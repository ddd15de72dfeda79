"""Packaged static files (the console's, Swagger UI's) served with a long cache lifetime: their
URLs carry a hash of their content (`?v=`), so a browser may keep them for a year."""

from __future__ import annotations

from pathlib import Path

from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CACHE_CONTROL = b"public, max-age=31536000, immutable"


class CachedAssets:
    def __init__(self, directory: Path) -> None:
        self.app: ASGIApp = StaticFiles(directory=directory)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_cached(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in (200, 304):
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"cache-control", CACHE_CONTROL),
                    (b"x-content-type-options", b"nosniff"),
                ]
            await send(message)

        await self.app(scope, receive, send_cached)
