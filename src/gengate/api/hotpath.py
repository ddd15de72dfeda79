"""A thin front for the few routes that carry most traffic (status reads and submits).

A status poll is a point read, a submit one insert; the framework's request objects, routing
and middleware layers would cost more than the work itself. Requests that match a hot route
are answered here directly in raw ASGI, with the same handlers, errors and envelope as the
framework routes (which stay the reference for every other method and path); all else passes
through untouched. A route with a body (a submit) first passes the same input checks as
every framework route (:class:`~gengate.api.guard.RequestGuard`, given to the hot path).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from gengate.api.errors import on_client_gone, response_headers
from gengate.api.parked import ParkedPoll
from gengate.api.trace import RESPONSE_HEADERS_KEY, trace_id_of
from gengate.dialects import MODULES, error_envelope
from gengate.domain.dialect import Dialect
from gengate.domain.errors import ApiError, BadRequest, GatewayError
from gengate.observability.context import note_status
from gengate.server.hot_lane import Headers, with_length
from gengate.services.longpoll import LongPoll

if TYPE_CHECKING:  # the guard reads headers with this module's `header_value`
    from gengate.api.guard import RequestGuard

log = logging.getLogger(__name__)

_JSON = (b"content-type", b"application/json")
#: A hot answer: its status, headers (content length last) and body.
Answer = tuple[int, Headers, bytes]
#: A handler of a route without a body, and one of a route with a body (it reads it from `receive`).
Handler = Callable[[Scope], Awaitable[Any]]
BodyHandler = Callable[[Scope, Receive], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class HotRoute:
    """`GET {prefix}{rest}`, where `rest` holds no `/`; the handler returns the `data` object,
    answered in the `{code, message, data}` envelope of `dialect` (KIE says `msg`), or as the
    whole body for a dialect without an envelope (Replicate).

    With `exact`, the path must be `prefix` itself: for routes whose parameters are all in
    the query string (KIE's `recordInfo`, `createTask`).
    """

    method: str
    prefix: str
    #: A :data:`BodyHandler` when `body` is set, else a :data:`Handler`.
    handler: Handler | BodyHandler
    dialect: Dialect = Dialect.APIXO
    exact: bool = False
    #: The name of the path's last segment in the route's template (what `rest` is).
    rest_name: str = "model"
    #: The request has a body (a submit): the handler is given `receive` and reads it itself,
    #: after its own checks (a key), as the framework route does.
    body: bool = False
    #: The status of a success (Replicate's create says 201).
    ok: int = 200
    #: Taken from the dialect once, so that a hot answer is one dict and one dump; None: the
    #: dialect has no envelope, and `data` is the whole body (Replicate's prediction).
    message_field: str | None = field(init=False)
    #: The route's template, as a framework route names it (for request logs and metrics).
    path: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "message_field", MODULES[self.dialect].MESSAGE_FIELD)
        object.__setattr__(self, "path", self.prefix if self.exact else f"{self.prefix}{{{self.rest_name}}}")

    def encode(self, data: Any) -> bytes:
        """The body of a success: `data` in the dialect's envelope, or alone (Replicate)."""
        if self.message_field is None:
            return orjson.dumps(data)
        return orjson.dumps({"code": 200, self.message_field: "success", "data": data})

    def matches(self, method: str, path: str) -> bool:
        if method != self.method:
            return False
        if self.exact:
            return path == self.prefix
        rest = path[len(self.prefix) :]
        return path.startswith(self.prefix) and bool(rest) and "/" not in rest


class HotPath:
    def __init__(self, app: ASGIApp, routes: Sequence[HotRoute], guard: RequestGuard | None = None) -> None:
        if guard is None and any(route.body for route in routes):
            raise ValueError("a hot route with a body needs the request guard")
        self.app = app
        self.routes = tuple(routes)
        self.guard = guard

    def route_for(self, method: str, path: str) -> HotRoute | None:
        for route in self.routes:
            if route.matches(method, path):
                return route
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            route = self.route_for(scope["method"], scope["path"])
            if route is not None:
                scope["route"] = route
                status, headers, body = await self.reply(route, scope, receive)
                note_status(status)
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    async def reply(self, route: HotRoute, scope: Scope, receive: Receive | None = None) -> Answer:
        """The whole answer to a hot request: its status, headers (content length last) and body.
        It never raises: an unexpected error is logged and answered in the envelope."""
        answer = await self.reply_or_park(route, scope, receive, park=False)
        assert not isinstance(answer, ParkedPoll)  # (only given with `park`)
        return answer

    async def reply_or_park(
        self, route: HotRoute, scope: Scope, receive: Receive | None = None, *, park: bool
    ) -> Answer | ParkedPoll:
        """:meth:`reply`; with `park`, for a caller that can hold the request, a long-poll is
        given back parked (:mod:`gengate.api.parked`), to answer at its task's next change."""
        trace_id = trace_id_of(scope)
        trace_header = (b"x-trace-id", trace_id.encode())
        headers = [_JSON, trace_header]
        try:
            if route.body:
                assert self.guard is not None
                assert receive is not None
                admitted = self.guard.admit(scope, receive)
                if isinstance(admitted, GatewayError):  # refused before a byte of the body is read
                    status, headers, body = self.guard.refusal(admitted, scope)
                    return status, [*headers, trace_header], body
                data = await cast(BodyHandler, route.handler)(scope, admitted)
            else:
                data = await cast(Handler, route.handler)(scope)
                if isinstance(data, LongPoll):
                    if park:
                        fail = partial(failure, route, scope, headers)
                        return ParkedPoll(data, route, finished_headers(scope, headers), fail)
                    data = await data.settle()
            status = route.ok
            body = route.encode(data)
        except Exception as exc:
            if isinstance(exc, ClientDisconnect):  # gone mid-body: the framework's own handler tells
                response = await on_client_gone(Request(scope), exc)
                headers = [*response.raw_headers, trace_header, *scope.get(RESPONSE_HEADERS_KEY, ())]
                return response.status_code, headers, bytes(response.body)
            return failure(route, scope, headers, exc)
        return status, with_length(finished_headers(scope, headers), body), body


def failure(route: HotRoute, scope: Scope, headers: Headers, exc: Exception) -> Answer:
    """The answer to a hot request that failed: a gateway error as it says, anything else
    logged and answered as an internal error, in the route's envelope. `headers` are the
    answer's own so far (content type, trace id)."""
    trace_id = trace_id_of(scope)
    error = exc if isinstance(exc, GatewayError) else ApiError()
    if error is not exc:
        log.error("unexpected error (trace_id %s) on %s", trace_id, scope["path"], exc_info=exc)
    body = orjson.dumps(error_envelope(route.dialect, error, trace_id))
    own = [(name.lower().encode(), value.encode()) for name, value in response_headers(error).items()]
    return error.status, with_length(finished_headers(scope, [*headers, *own]), body), body


def finished_headers(scope: Scope, headers: Headers) -> Headers:
    """`headers` with those the request's handlers added on the way (a rate limit's), all but
    the content length."""
    extra = scope.get(RESPONSE_HEADERS_KEY)
    return [*headers, *extra] if extra else headers


def header_value(scope: Scope, name: bytes) -> str | None:
    """A request header by lower-case name, decoded as Latin-1 like Starlette does."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def query_value(query_string: bytes, name: bytes) -> str | None:
    """The value of a query parameter; percent-decoding only when there is any. A parameter
    given twice is a bad request, as on every other route (:mod:`gengate.api.guard`)."""
    found: str | None = None
    if b"%" in query_string or b"+" in query_string:
        wanted = name.decode()
        for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
            if key == wanted:
                if found is not None:
                    raise _repeated(wanted)
                found = value
        return found
    for pair in query_string.split(b"&"):
        raw_key, _, raw_value = pair.partition(b"=")
        if raw_key == name:
            if found is not None:
                raise _repeated(name.decode())
            found = raw_value.decode("latin-1")
    return found


def _repeated(name: str) -> BadRequest:
    return BadRequest(f"The query parameter `{name}` is given more than once.")
