"""Hot requests (status reads) answered by the connection's protocol itself, below ASGI.

A status poll through uvicorn's ASGI cycle pays for a cycle object and its event, the proxy
headers layer, two `send` messages checked header by header, and the middleware frames: more
than the read itself. A plain `GET` whose path is a hot route, with no body and no upgrade,
arriving on a connection with nothing in flight, is answered here instead: the app's
:class:`HotLane` (the same handlers, envelope, request log and metrics as the ASGI hot path)
returns the status, headers and body, and the protocol writes the response in one piece.
Everything else (a body, `Expect`, a percent-encoded path, a pipelined request behind one in
flight) takes uvicorn's own path, which stays the reference.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from typing import Any, Protocol

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

Headers = list[tuple[bytes, bytes]]
#: Request headers that mean a body follows, or that the client waits for an interim answer.
BODY_HEADERS = frozenset({b"content-length", b"transfer-encoding", b"expect"})


class HotLane(Protocol):
    """What the app offers the protocol: its hot routes, and their answers."""

    def route_for(self, method: str, path: str) -> object | None:
        """The hot route of `method` and `path`, or None (the request goes through ASGI)."""

    def answer(self, route: Any, scope: dict[str, Any]) -> Awaitable[tuple[int, Headers, bytes]]:
        """The status, headers and body of the answer; never raises for a client's input."""


def find_hot_lane(app: object) -> HotLane | None:
    """The lane of the app, looked for through the layers that wrap it (`.app`)."""
    for _ in range(8):
        lane = getattr(app, "hot_lane", None)
        if lane is not None:
            return lane  # type: ignore[no-any-return]
        app = getattr(app, "app", None)
        if app is None:
            break
    return None


class _NoEvent:
    """uvicorn's protocol sets its cycle's event when a body arrives or the client leaves; a
    hot request has no body and no one waits."""

    def set(self) -> None:
        pass


_NO_EVENT = _NoEvent()


class HotCycle:
    """Stands in for uvicorn's request cycle while a hot request is answered: the attributes
    its protocol reads and writes (a pipelined request, a lost connection, a shutdown)."""

    __slots__ = ("disconnected", "keep_alive", "more_body", "response_complete")
    message_event = _NO_EVENT

    def __init__(self, keep_alive: bool) -> None:
        self.keep_alive = keep_alive
        self.disconnected = False
        self.response_complete = False
        self.more_body = True


def render(
    status: int,
    server_headers: Iterable[tuple[bytes, bytes]],
    headers: Headers,
    body: bytes,
    keep_alive: bool,
) -> bytes:
    """The whole response: the status line, the server's headers (date, server), the answer's."""
    parts = [STATUS_LINE[status]]
    for name, value in server_headers:
        parts += (name, b": ", value, b"\r\n")
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    if not keep_alive:
        parts.append(b"connection: close\r\n")
    parts += (b"\r\n", body)
    return b"".join(parts)
