"""`/api/v1/account`: what a key may see of itself, its webhook secret and its credit usage."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gengate.api.context import ApiContext
from gengate.api.responses import success
from gengate.domain.errors import BadRequest
from gengate.domain.keys import ApiKey

MAX_PAGE = 200
DEFAULT_PAGE = 50


class AccountRoutes:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[Route]:
        return [
            Route("/api/v1/account", self.account, methods=["GET"]),
            Route("/api/v1/account/rotateWebhookSecret", self.rotate, methods=["POST"]),
            Route("/api/v1/account/usage", self.usage, methods=["GET"]),
        ]

    async def _view(self, key: ApiKey) -> dict[str, Any]:
        # The authenticated key may be cached for a moment; the balance is read fresh.
        return {
            **key.public(),
            "credits": await self.ctx.keys.balance(key),
            "webhook_secret": self.ctx.keys.webhook_secret(key),
        }

    async def account(self, request: Request) -> Response:
        key = await self.ctx.authenticate(request.scope)
        return success(await self._view(key))

    async def rotate(self, request: Request) -> Response:
        key = await self.ctx.authenticate(request.scope)
        return success(await self._view(await self.ctx.keys.rotate_webhook_secret(key)))

    async def usage(self, request: Request) -> Response:
        """The key's ledger, newest first, `limit` entries a page; `cursor` (from `nextCursor`)
        continues. Every charge, refund and top-up, and the balance now (null: unlimited)."""
        key = await self.ctx.authenticate(request.scope)
        limit = _bounded_int(request.query_params.get("limit"), "limit", DEFAULT_PAGE, 1, MAX_PAGE)
        cursor = request.query_params.get("cursor")
        before = _bounded_int(cursor, "cursor", None, 1, 2**63 - 1) if cursor else None
        entries = await self.ctx.keys.usage(key, before, limit)
        return success(
            {
                "credits": await self.ctx.keys.balance(key),
                "entries": [entry.public() for entry in entries],
                "nextCursor": str(entries[-1].id) if len(entries) == limit else None,
            }
        )


def _bounded_int(raw: str | None, name: str, default: int | None, low: int, high: int) -> Any:
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or not low <= int(raw) <= high:
        raise BadRequest(f"`{name}` must be an integer from {low} to {high}.")
    return int(raw)
