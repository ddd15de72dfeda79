"""The admin API: keys. Only the admin key may call it."""

from __future__ import annotations

import copy
from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from gengate.api.body import read_json_object
from gengate.api.openapi_parts import DocSpec, Fragment, enveloped, errors, ok_data, operation, ref
from gengate.api.responses import success
from gengate.api.routing import ApiRoutes, route
from gengate.domain.errors import BadRequest
from gengate.domain.keys import KeyChanges
from gengate.domain.ledger import MAX_CREDITS
from gengate.domain.validation import convert
from gengate.services.keys import check_rate_limit
from gengate.services.ratelimit import RATE_LIMIT_PATTERN

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
UnixMs = Annotated[int, msgspec.Meta(ge=0, le=2**53, description="Unix milliseconds.")]
ModelIds = Annotated[list[str], msgspec.Meta(max_length=1000)]
Credits = Annotated[int, msgspec.Meta(ge=0, le=MAX_CREDITS, description="Credit balance; null: unlimited.")]
CreditDelta = Annotated[
    int,
    msgspec.Meta(
        ge=-MAX_CREDITS,
        le=MAX_CREDITS,
        description="Added to the balance atomically (negative takes away); a limited key only.",
    ),
]
RateLimit = Annotated[
    str,
    msgspec.Meta(
        pattern=RATE_LIMIT_PATTERN,
        description="Requests per moving window, a `limits` string such as `60/minute` or "
        "`100 per 2 hours`; null: the server's default.",
    ),
]
MaxConcurrent = Annotated[
    int,
    msgspec.Meta(ge=1, le=1_000_000, description="Pending and processing tasks at once; null: no cap."),
]


class CreateKeyBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of `POST /admin/v1/keys`."""

    name: Name
    models: ModelIds | None = None
    expires_at: UnixMs | None = None
    disabled: bool = False
    credits: Credits | None = None
    rate_limit: RateLimit | None = None
    max_concurrent: MaxConcurrent | None = None


class UpdateKeyBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of `PATCH /admin/v1/keys/{id}`: only the fields sent change. `credits` sets the
    balance, `add_credits` adds to it; not both."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    models: ModelIds | msgspec.UnsetType | None = msgspec.UNSET
    expires_at: UnixMs | msgspec.UnsetType | None = msgspec.UNSET
    disabled: bool | msgspec.UnsetType = msgspec.UNSET
    credits: Credits | msgspec.UnsetType | None = msgspec.UNSET
    add_credits: CreditDelta | msgspec.UnsetType = msgspec.UNSET
    rate_limit: RateLimit | msgspec.UnsetType | None = msgspec.UNSET
    max_concurrent: MaxConcurrent | msgspec.UnsetType | None = msgspec.UNSET


class AdminRoutes(ApiRoutes):
    def _check_models(self, models: list[str] | None) -> None:
        unknown = [m for m in models or () if m not in self.ctx.catalogue]
        if unknown:
            raise BadRequest(f"models: unknown model ids: {', '.join(unknown)}.")

    @route("/admin/v1/keys", "POST")
    async def create_key(self, request: Request) -> Response:
        self.ctx.keys.authenticate_admin(request.headers.get("authorization"))
        body = convert(await read_json_object(request, self.ctx.max_body_bytes), CreateKeyBody, "body")
        self._check_models(body.models)
        key, secret = await self.ctx.keys.create(
            body.name,
            models=body.models,
            expires_at=body.expires_at,
            disabled=body.disabled,
            credits=body.credits,
            rate_limit=body.rate_limit,
            max_concurrent=body.max_concurrent,
        )
        return success({**key.public(), "key": secret})

    @route("/admin/v1/keys", "GET")
    async def list_keys(self, request: Request) -> Response:
        self.ctx.keys.authenticate_admin(request.headers.get("authorization"))
        return success({"keys": [key.public() for key in await self.ctx.keys.list()]})

    @route("/admin/v1/keys/{key_id}", "PATCH")
    async def update_key(self, request: Request) -> Response:
        self.ctx.keys.authenticate_admin(request.headers.get("authorization"))
        body = convert(await read_json_object(request, self.ctx.max_body_bytes), UpdateKeyBody, "body")
        if isinstance(body.models, list):
            self._check_models(body.models)
        if body.credits is not msgspec.UNSET and body.add_credits is not msgspec.UNSET:
            raise BadRequest("Send `credits` (set the balance) or `add_credits` (add to it), not both.")
        key_id = request.path_params["key_id"]
        changes = KeyChanges(
            name=body.name,
            disabled=body.disabled,
            expires_at=body.expires_at,
            models=tuple(body.models) if isinstance(body.models, list) else body.models,
            credits=body.credits,
            rate_limit=body.rate_limit,
            max_concurrent=body.max_concurrent,
        )
        # Whatever can refuse goes first, so a refused request changes nothing.
        check_rate_limit(body.rate_limit if isinstance(body.rate_limit, str) else None)
        if body.add_credits is not msgspec.UNSET:
            await self.ctx.keys.add_credits(key_id, body.add_credits)
        key = await self.ctx.keys.update(key_id, changes)
        return success(key.public())


#: The request bodies the document draws schemas from.
OPENAPI_STRUCTS = [CreateKeyBody, UpdateKeyBody]


def openapi(spec: DocSpec) -> Fragment:
    """The keys routes; the body schemas name this catalogue's model ids."""
    schemas = {name: copy.deepcopy(spec.schemas[name]) for name in ("CreateKeyBody", "UpdateKeyBody")}
    for schema in schemas.values():
        schema["properties"]["models"]["anyOf"][0]["items"] = {"type": "string", "enum": spec.model_ids}
    # Set the balance or add to it, not both at once.
    schemas["UpdateKeyBody"]["not"] = {"required": ["credits", "add_credits"]}
    paths = {
        "/admin/v1/keys": {
            "post": operation(
                "Create an API key (shown once)",
                enveloped(ref("Key")) | errors(400, 401, 413),
                body=ref("CreateKeyBody"),
            ),
            "get": operation(
                "List API keys", ok_data({"keys": {"type": "array", "items": ref("Key")}}) | errors(401)
            ),
        },
        "/admin/v1/keys/{key_id}": {
            "patch": operation(
                "Change a key: disable, expiry, allowed models, name",
                enveloped(ref("Key")) | errors(400, 401, 404, 413),
                parameters=[{"name": "key_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                body=ref("UpdateKeyBody"),
            )
        },
    }
    return Fragment(paths, schemas)
