"""One observer of every HTTP request: the access line, and the hooks of metrics and tracing.

It is the outermost layer of the app (outside the hot path that answers status polls before
the framework), so every request is seen once. Per request it costs a clock read and one
context variable: the two layers that send responses note the status there, so there is no
send wrapper. The line itself is written by structlog's bytes logger
(:mod:`gengate.observability.logs`).

Observers implement :class:`RequestObserver`: `on_request_start(scope)` before the app runs
(in the request's own context, so a span made current there is the parent of the request's
work), `on_request(record)` once the response is sent or the app failed. Neither may raise.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextvars import Token
from typing import Any, NamedTuple

from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from gengate.api.trace import trace_id_of
from gengate.observability.context import REQUEST, RequestNotes
from gengate.observability.logs import access_logger, access_wanted

#: The route of a request no route took: one value, so that metrics and lines stay bounded.
UNMATCHED = "unmatched"
#: Methods named as they are; any other is `OTHER` (a client may send any token).
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestRecord(NamedTuple):
    """One answered request, every field bounded (no raw path, no query). A named tuple: made
    for every request, and a frozen dataclass takes four times as long to make (1.0 against
    0.3 us)."""

    method: str
    #: The template of the route that took it (`/api/v1/statusTask/{model}`), or `unmatched`.
    route: str
    #: The status sent; 500 when the app failed before answering.
    status: int
    duration_s: float
    trace_id: str
    key_id: str | None
    task_id: str | None
    #: The ASGI scope, for observers that read headers (a `traceparent`) or their own keys.
    scope: Scope


class RequestObserver:
    """Hooks called for every HTTP request; subclass and override what you need."""

    def on_request_start(self, scope: Scope) -> None:
        """Before the app sees the request (same task and context as the app)."""

    def on_request(self, record: RequestRecord) -> None:
        """After the response was sent, or the app failed."""


def route_template(scope: Scope) -> str:
    """The template of the route that answered (the framework's or the hot path's), else `unmatched`."""
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return UNMATCHED
    if isinstance(route, Mount):  # static files: the folder, not the file
        return path + "/{path}"
    return path


class RequestLog:
    """The outermost ASGI layer: times each HTTP request, writes its access line (unless
    `access_log` is off) and calls the observers."""

    def __init__(self, app: ASGIApp, observers: Sequence[RequestObserver] = (), *, access_log: bool = True):
        self.app = app
        self.observers = tuple(observers)
        self.access_log = access_log and access_wanted()
        #: Bound now, with the logging configured by then (no lazy proxy on the hot path).
        self._log = access_logger()
        #: The hot routes answered by the server's protocol below ASGI, when the app has them
        #: (:mod:`gengate.server.hot_lane`); set by the app's builder.
        self.hot_lane: object | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, notes, token = self.begin(scope)
        try:
            await self.app(scope, receive, send)
        finally:
            self.end(scope, started, notes, token)

    def begin(self, scope: Scope) -> tuple[float, RequestNotes, Token[RequestNotes | None]]:
        """Before the app sees a request: its clock, its notes (current from here on), the
        observers' start. The server's hot lane calls this and :meth:`end` around its answer."""
        started = time.perf_counter()
        notes = RequestNotes(trace_id_of(scope))
        token = REQUEST.set(notes)
        for observer in self.observers:
            observer.on_request_start(scope)
        return started, notes, token

    def end(
        self, scope: Scope, started: float, notes: RequestNotes, token: Token[RequestNotes | None]
    ) -> None:
        """Once the response was sent or the app failed (no status noted: 500)."""
        REQUEST.reset(token)
        self._done(scope, notes, notes.status or 500, time.perf_counter() - started)

    def leave(self, token: Token[RequestNotes | None]) -> None:
        """The request goes on outside the context :meth:`begin` ran in (a parked long-poll):
        its notes stop being current there; :meth:`finish` ends it."""
        REQUEST.reset(token)

    def finish(self, scope: Scope, started: float, notes: RequestNotes, status: int) -> None:
        """The end of a request :meth:`leave` took out of its context, with its status."""
        self._done(scope, notes, status, time.perf_counter() - started)

    def _done(self, scope: Scope, notes: RequestNotes, status: int, duration_s: float) -> None:
        method: str = scope["method"]
        if method not in _METHODS:
            method = "OTHER"
        route = route_template(scope)
        # A client that left before its body arrived is told once, by the app's own line.
        if self.access_log and not notes.client_gone:
            self._log.info(
                "request",
                method=method,
                route=route,
                status=status,
                duration_ms=round(duration_s * 1000, 3),
                key_id=notes.key_id,
                trace_id=notes.trace_id,
                task_id=notes.task_id,
            )
        if self.observers:
            record = RequestRecord(
                method, route, status, duration_s, notes.trace_id, notes.key_id, notes.task_id, scope
            )
            for observer in self.observers:
                observer.on_request(record)
