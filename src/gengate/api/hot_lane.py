"""The app's side of the hot lane (:mod:`gengate.server.hot_lane`): the hot routes of
:class:`~gengate.api.hotpath.HotPath`, answered for the server's protocol with what the request
layer does around every request (its notes, observers and access line)."""

from __future__ import annotations

from typing import Any

from starlette.types import Receive

from gengate.api.hotpath import HotPath, HotRoute
from gengate.observability.requests import RequestLog


class AppHotLane:
    """What the request layer (:class:`RequestLog`) does around an ASGI request, done here
    around :meth:`HotPath.reply`: a lane request gets the same access line, metrics and span."""

    def __init__(self, hot: HotPath, requests: RequestLog) -> None:
        self.route_for = hot.route_for
        self._reply = hot.reply
        self._requests = requests

    async def answer(
        self, route: HotRoute, scope: Any, receive: Receive | None = None
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        scope["route"] = route
        started, notes, token = self._requests.begin(scope)
        try:
            status, headers, body = await self._reply(route, scope, receive)
            notes.status = status
            return status, headers, body
        finally:
            self._requests.end(scope, started, notes, token)

    async def answer_post(
        self, route: HotRoute, scope: Any, receive: Receive
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """A hot `POST` (a submit) whose whole body the protocol holds, read from `receive`."""
        return await self.answer(route, scope, receive)
