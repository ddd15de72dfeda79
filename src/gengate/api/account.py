"""`/api/v1/account`: what a key may see of itself, its webhook secret included."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gengate.api.context import ApiContext
from gengate.api.responses import success
from gengate.domain.keys import ApiKey


class AccountRoutes:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[Route]:
        return [
            Route("/api/v1/account", self.account, methods=["GET"]),
            Route("/api/v1/account/rotateWebhookSecret", self.rotate, methods=["POST"]),
        ]

    def _view(self, key: ApiKey) -> dict[str, Any]:
        return {**key.public(), "webhook_secret": self.ctx.keys.webhook_secret(key)}

    async def account(self, request: Request) -> Response:
        key = await self.ctx.keys.authenticate(request.headers.get("authorization"))
        return success(self._view(key))

    async def rotate(self, request: Request) -> Response:
        key = await self.ctx.keys.authenticate(request.headers.get("authorization"))
        return success(self._view(await self.ctx.keys.rotate_webhook_secret(key)))
