"""`POST /hooks/upstream/{token}`: an upstream says one of our relayed tasks changed.

The token, signed by this gateway, names a relay waiting in some API process; if it waits in
this one, it wakes and reads the upstream's status itself. The body is not taken as a result:
a callback only says "look now", so a forged or replayed one cannot change one (a cog provider
shows the body's logs). An unknown token is
`no_api`; a valid one is 200 even when no relay here waits for it, so the upstream does not
retry a callback whose task another process (or polling) is already following.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gengate.api.openapi_parts import DocSpec, Fragment, enveloped, errors, operation
from gengate.api.responses import success
from gengate.api.routing import RouteGroup, route
from gengate.domain.errors import NoApi
from gengate.providers.relay.hooks import HOOK_PREFIX, UpstreamHooks


class UpstreamHookRoutes(RouteGroup):
    def __init__(self, hooks: UpstreamHooks | None) -> None:
        self.hooks = hooks

    @route(HOOK_PREFIX + "{token}", "POST")
    async def receive(self, request: Request) -> Response:
        token = request.path_params["token"]
        if self.hooks is None or not self.hooks.valid(token):
            raise NoApi("No such upstream hook.")
        self.hooks.deliver(token, await request.body())
        return success(None)


def openapi(spec: DocSpec) -> Fragment:
    """The route upstream providers call back."""
    paths = {
        "/hooks/upstream/{token}": {
            "post": operation(
                "Callback for an upstream provider: wakes the relay that asked for it",
                enveloped({"type": "null"}) | errors(404),
                description="The gateway hands this URL (with a signed token) to the upstreams it "
                "relays tasks to. The body is never taken as a result: the relay reads the upstream's "
                "status itself (a cog server's body only adds to the task's logs).",
                parameters=[{"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}],
                secured=False,
            )
        },
    }
    return Fragment(paths)
