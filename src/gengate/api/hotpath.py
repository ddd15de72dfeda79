"""A thin front for the few routes that carry most traffic (status reads).

A status poll is a point read; the framework's request objects, routing and middleware
layers would cost more than the read itself. Requests that match a hot route are answered
here directly in raw ASGI, with the same handlers, errors and envelope as the framework
routes (which stay the reference for every other method and path); all else passes
through untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from gengate.api.errors import response_headers
from gengate.api.trace import RESPONSE_HEADERS_KEY, trace_id_of
from gengate.dialects import MODULES, error_envelope
from gengate.domain.dialect import Dialect
from gengate.domain.errors import ApiError, BadRequest, GatewayError
from gengate.observability.context import note_status

log = logging.getLogger(__name__)

_JSON = (b"content-type", b"application/json")


@dataclass(frozen=True, slots=True)
class HotRoute:
    """`GET {prefix}{rest}`, where `rest` holds no `/`; the handler returns the `data` object,
    answered in the `{code, message, data}` envelope of `dialect` (KIE says `msg`), or as the
    whole body for a dialect without an envelope (Replicate).

    With `exact`, the path must be `prefix` itself: for routes whose parameters are all in
    the query string (KIE's `recordInfo`).
    """

    method: str
    prefix: str
    handler: Callable[[Scope], Awaitable[Any]]
    dialect: Dialect = Dialect.APIXO
    exact: bool = False
    #: The name of the path's last segment in the route's template (what `rest` is).
    rest_name: str = "model"
    #: Taken from the dialect once, so that a hot answer is one dict and one dump; None: the
    #: dialect has no envelope, and `data` is the whole body (Replicate's prediction).
    message_field: str | None = field(init=False)
    #: The route's template, as a framework route names it (for request logs and metrics).
    path: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "message_field", MODULES[self.dialect].MESSAGE_FIELD)
        object.__setattr__(self, "path", self.prefix if self.exact else f"{self.prefix}{{{self.rest_name}}}")

    def matches(self, method: str, path: str) -> bool:
        if method != self.method:
            return False
        if self.exact:
            return path == self.prefix
        rest = path[len(self.prefix) :]
        return path.startswith(self.prefix) and bool(rest) and "/" not in rest


class HotPath:
    def __init__(self, app: ASGIApp, routes: Sequence[HotRoute]) -> None:
        self.app = app
        self.routes = tuple(routes)

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
                status, headers, body = await self.reply(route, scope)
                note_status(status)
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    async def reply(self, route: HotRoute, scope: Scope) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """The whole answer to a hot request: its status, headers (content length last) and body.
        It never raises: an unexpected error is logged and answered in the envelope."""
        trace_id = trace_id_of(scope)
        headers = [_JSON, (b"x-trace-id", trace_id.encode())]
        try:
            data = await route.handler(scope)
            status = 200
            if route.message_field is None:
                body = orjson.dumps(data)
            else:
                body = orjson.dumps({"code": 200, route.message_field: "success", "data": data})
        except Exception as exc:
            error = exc if isinstance(exc, GatewayError) else ApiError()
            if error is not exc:
                log.error("unexpected error (trace_id %s) on %s", trace_id, scope["path"], exc_info=exc)
            status = error.status
            body = orjson.dumps(error_envelope(route.dialect, error, trace_id))
            headers += [
                (name.lower().encode(), value.encode()) for name, value in response_headers(error).items()
            ]
        extra = scope.get(RESPONSE_HEADERS_KEY)
        if extra:
            headers += extra
        headers.append((b"content-length", str(len(body)).encode()))
        return status, headers, body


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
