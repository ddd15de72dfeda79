"""`/api/v1/account`: what a key may see of itself, its webhook secret and its credit usage."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gengate.api.openapi_parts import KEY, DocSpec, Fragment, enveloped, errors, ok_data, operation, ref
from gengate.api.responses import success
from gengate.api.routing import ApiRoutes, route
from gengate.domain.errors import BadRequest
from gengate.domain.keys import ApiKey
from gengate.domain.ledger import LedgerKind

MAX_PAGE = 200
DEFAULT_PAGE = 50


class AccountRoutes(ApiRoutes):
    async def _view(self, key: ApiKey) -> dict[str, Any]:
        # The authenticated key may be cached for a moment; the balance is read fresh.
        return {
            **key.public(),
            "credits": await self.ctx.keys.balance(key),
            "webhook_secret": self.ctx.keys.webhook_secret(key),
        }

    @route("/api/v1/account", "GET")
    async def account(self, request: Request) -> Response:
        key = await self.ctx.authenticate(request.scope)
        return success(await self._view(key))

    @route("/api/v1/account/rotateWebhookSecret", "POST")
    async def rotate(self, request: Request) -> Response:
        key = await self.ctx.authenticate(request.scope)
        return success(await self._view(await self.ctx.keys.rotate_webhook_secret(key)))

    @route("/api/v1/account/usage", "GET")
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


LEDGER_ENTRY = {
    "type": "object",
    "required": ["id", "kind", "amount", "balance", "taskId", "createdAt"],
    "properties": {
        "id": {"type": "integer"},
        "kind": {
            "type": "string",
            "enum": [kind.value for kind in LedgerKind],
            "description": "`charge` at submit, `refund` of a failed or canceled task (once), "
            "`topup` by an admin.",
        },
        "amount": {"type": "integer", "description": "Signed change of the balance."},
        "balance": {"type": ["integer", "null"], "description": "After the change; null: unlimited."},
        "taskId": {"type": ["string", "null"]},
        "createdAt": {"type": "integer", "description": "Unix ms."},
    },
}


def openapi(spec: DocSpec) -> Fragment:
    """The calling key, its ledger, and its webhook secret."""
    paths = {
        "/api/v1/account": {
            "get": operation(
                "The calling key, with its webhook secret", enveloped(ref("Account")) | errors(401, 403)
            )
        },
        "/api/v1/account/usage": {
            "get": operation(
                "The key's credit ledger, newest first, and its balance",
                ok_data(
                    {
                        "credits": {"type": ["integer", "null"]},
                        "entries": {"type": "array", "items": ref("LedgerEntry")},
                        "nextCursor": {"type": ["string", "null"]},
                    }
                )
                | errors(400, 401, 403),
                description="Every charge (at submit), refund (of a failed or canceled task, once) "
                "and top-up, in cursor pages.",
                parameters=[
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 200},
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "schema": {"type": "string", "pattern": "^([1-9][0-9]{0,17})?$"},
                    },
                ],
            )
        },
        "/api/v1/account/rotateWebhookSecret": {
            "post": operation(
                "Replace the webhook secret; later callbacks are signed with the new one",
                enveloped(ref("Account")) | errors(401, 403),
            )
        },
    }
    account = {**KEY, "properties": {**KEY["properties"], "webhook_secret": {"type": "string"}}}
    return Fragment(paths, {"Account": account, "LedgerEntry": LEDGER_ENTRY})
