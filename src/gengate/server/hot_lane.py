"""Hot requests (status reads, submits) answered by the connection's protocol itself, below ASGI.

A status poll through uvicorn's ASGI cycle pays for a cycle object and its event, the proxy
headers layer, two `send` messages checked header by header, and the middleware frames: more
than the read itself. A plain `GET` whose path is a hot route, with no body and no upgrade,
arriving on a connection with nothing in flight, is answered here instead: the app's
:class:`HotLane` (the same handlers, envelope, request log and metrics as the ASGI hot path)
returns the status, headers and body, and the protocol writes the response in one piece. A
`POST` of a hot route (a submit) is taken too when its body has a `Content-Length` and
arrived whole in the same read as its head. Everything else (a chunked or split body,
`Expect`, a percent-encoded path, a pipelined request behind one in flight) takes uvicorn's
own path, which stays the reference.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

Headers = list[tuple[bytes, bytes]]
#: Request headers that mean a body follows, or that the client waits for an interim answer.
BODY_HEADERS = frozenset({b"content-length", b"transfer-encoding", b"expect"})


def with_length(headers: Headers, body: bytes) -> Headers:
    """`headers` and, last, the content length of `body` (a hot answer's headers end with it)."""
    return [*headers, (b"content-length", str(len(body)).encode())]


#: In a hot request's scope: the protocol can hold the request without a coroutine (a
#: long-poll), and takes a :class:`HeldAnswer` for an answer.
HOLD_KEY = "gengate.can_hold"


class HeldAnswer(Protocol):
    """An answer the app gives later (a parked long-poll), with no coroutine waiting for it."""

    def hold(self, respond: Callable[[int, Headers, bytes], None]) -> None:
        """Answer with `respond` (status, headers, body) once the answer is known; at most once."""

    def answer_now(self) -> None:
        """Answer as soon as can be, without waiting any longer (the server stops)."""

    def drop(self) -> None:
        """The client left: answer nothing."""


Answer = tuple[int, Headers, bytes] | HeldAnswer


class HotLane(Protocol):
    """What the app offers the protocol: its hot routes, and their answers."""

    def route_for(self, method: str, path: str) -> object | None:
        """The hot route of `method` and `path`, or None (the request goes through ASGI)."""

    def answer(self, route: Any, scope: dict[str, Any]) -> Awaitable[Answer]:
        """The status, headers and body of the answer, or (where the scope says the protocol
        can hold it, :data:`HOLD_KEY`) a held answer; never raises for a client's input."""


#: What a lane that takes `POST`s (submits) offers besides, as `answer_post`: `answer` with the
#: `receive` the body is read from. A lane without it gets no `POST`.
AnswerPost = Callable[[Any, dict[str, Any], Callable[[], Awaitable[dict[str, Any]]]], Awaitable[Answer]]


def post_answerer(lane: HotLane | None) -> AnswerPost | None:
    """The lane's `answer_post`, or None (every `POST` goes through ASGI)."""
    return getattr(lane, "answer_post", None)


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
    its protocol reads and writes (a body arriving, a pipelined request, a lost connection, a
    shutdown)."""

    __slots__ = ("body", "disconnected", "keep_alive", "more_body", "read", "response_complete")
    message_event = _NO_EVENT

    def __init__(self, keep_alive: bool) -> None:
        self.keep_alive = keep_alive
        self.disconnected = False
        self.response_complete = False
        self.more_body = True
        #: What arrived of the body (uvicorn's `on_body` adds to it), and whether it was read.
        self.body = b""
        self.read = False

    async def receive(self) -> dict[str, Any]:
        """The body, whole (a hot `POST` is taken only once all of it arrived), then a disconnect."""
        if self.read:
            return {"type": "http.disconnect"}
        self.read = True
        return {"type": "http.request", "body": self.body, "more_body": False}


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
    if not keep_alive and (b"connection", b"close") not in headers:
        parts.append(b"connection: close\r\n")
    parts += (b"\r\n", body)
    return b"".join(parts)
