"""The app's side of the hot lane (:mod:`gengate.server.hot_lane`): the hot routes of
:class:`~gengate.api.hotpath.HotPath`, answered for the server's protocol with what the request
layer does around every request (its notes, observers and access line)."""

from __future__ import annotations

from functools import partial
from typing import Any

from starlette.types import Receive

from gengate.api.hotpath import HotPath, HotRoute
from gengate.api.parked import ParkedPoll
from gengate.observability.requests import RequestLog
from gengate.server.hot_lane import HOLD_KEY


class AppHotLane:
    """What the request layer (:class:`RequestLog`) does around an ASGI request, done here
    around :meth:`HotPath.reply`: a lane request gets the same access line, metrics and span.
    A long-poll the protocol can hold is given back parked (:mod:`gengate.api.parked`); its
    request ends when it is answered, or when its client leaves."""

    def __init__(self, hot: HotPath, requests: RequestLog) -> None:
        self.route_for = hot.route_for
        self._reply = hot.reply_or_park
        self._requests = requests

    async def answer(
        self, route: HotRoute, scope: Any, receive: Receive | None = None
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes] | ParkedPoll:
        scope["route"] = route
        requests = self._requests
        started, notes, token = requests.begin(scope)
        try:
            answer = await self._reply(route, scope, receive, park=scope.get(HOLD_KEY, False))
        except BaseException:
            requests.end(scope, started, notes, token)
            raise
        if isinstance(answer, ParkedPoll):
            requests.leave(token)
            answer.on_end = partial(requests.finish, scope, started, notes)
            return answer
        notes.status = answer[0]
        requests.end(scope, started, notes, token)
        return answer

    async def answer_post(
        self, route: HotRoute, scope: Any, receive: Receive
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes] | ParkedPoll:
        """A hot `POST` (a submit) whose whole body the protocol holds, read from `receive`."""
        return await self.answer(route, scope, receive)
