"""The admin API: keys. Only the admin key may call it."""

from __future__ import annotations

from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gengate.api.body import read_json_object
from gengate.api.context import ApiContext
from gengate.api.responses import success
from gengate.domain.errors import BadRequest
from gengate.domain.keys import KeyChanges
from gengate.domain.validation import convert

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
UnixMs = Annotated[int, msgspec.Meta(ge=0, le=2**53, description="Unix milliseconds.")]
ModelIds = Annotated[list[str], msgspec.Meta(max_length=1000)]


class CreateKeyBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of `POST /admin/v1/keys`."""

    name: Name
    models: ModelIds | None = None
    expires_at: UnixMs | None = None
    disabled: bool = False


class UpdateKeyBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of `PATCH /admin/v1/keys/{id}`: only the fields sent change."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    models: ModelIds | msgspec.UnsetType | None = msgspec.UNSET
    expires_at: UnixMs | msgspec.UnsetType | None = msgspec.UNSET
    disabled: bool | msgspec.UnsetType = msgspec.UNSET


class AdminRoutes:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[Route]:
        return [
            Route("/admin/v1/keys", self.create_key, methods=["POST"]),
            Route("/admin/v1/keys", self.list_keys, methods=["GET"]),
            Route("/admin/v1/keys/{key_id}", self.update_key, methods=["PATCH"]),
        ]

    def _check_models(self, models: list[str] | None) -> None:
        unknown = [m for m in models or () if m not in self.ctx.catalogue]
        if unknown:
            raise BadRequest(f"models: unknown model ids: {', '.join(unknown)}.")

    async def create_key(self, request: Request) -> Response:
        self.ctx.keys.authenticate_admin(request.headers.get("authorization"))
        body = convert(await read_json_object(request, self.ctx.max_body_bytes), CreateKeyBody, "body")
        self._check_models(body.models)
        key, secret = await self.ctx.keys.create(
            body.name, models=body.models, expires_at=body.expires_at, disabled=body.disabled
        )
        return success({**key.public(), "key": secret})

    async def list_keys(self, request: Request) -> Response:
        self.ctx.keys.authenticate_admin(request.headers.get("authorization"))
        return success({"keys": [key.public() for key in await self.ctx.keys.list()]})

    async def update_key(self, request: Request) -> Response:
        self.ctx.keys.authenticate_admin(request.headers.get("authorization"))
        body = convert(await read_json_object(request, self.ctx.max_body_bytes), UpdateKeyBody, "body")
        if isinstance(body.models, list):
            self._check_models(body.models)
        changes = KeyChanges(
            name=body.name,
            disabled=body.disabled,
            expires_at=body.expires_at,
            models=tuple(body.models) if isinstance(body.models, list) else body.models,
        )
        key = await self.ctx.keys.update(request.path_params["key_id"], changes)
        return success(key.public())
