"""`POST /hooks/upstream/{token}`: an upstream says one of our relayed tasks changed.

The token, signed by this gateway, names a relay waiting in some API process; if it waits in
this one, it wakes and reads the upstream's status itself. The body is not read: a callback
only says "look now", so a forged or replayed one cannot change a result. An unknown token is
`no_api`; a valid one is 200 even when no relay here waits for it, so the upstream does not
retry a callback whose task another process (or polling) is already following.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gengate.api.responses import success
from gengate.domain.errors import NoApi
from gengate.providers.relay_hooks import HOOK_PREFIX, UpstreamHooks


class UpstreamHookRoutes:
    def __init__(self, hooks: UpstreamHooks | None) -> None:
        self.hooks = hooks

    def routes(self) -> list[Route]:
        return [Route(HOOK_PREFIX + "{token}", self.receive, methods=["POST"])]

    async def receive(self, request: Request) -> Response:
        if self.hooks is None or not self.hooks.deliver(request.path_params["token"]):
            raise NoApi("No such upstream hook.")
        return success(None)
