"""Every request gets a trace id (the caller's `X-Trace-Id` when it sent a plausible one), and
every response, error or not, carries it in `X-Trace-Id` (and whatever headers a handler left
in the scope under `RESPONSE_HEADERS_KEY`).

It wraps the whole application, outside Starlette's own error middleware, so even a
response to an unexpected exception has the header.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gengate.domain.ids import new_trace_id
from gengate.observability.context import note_status

TRACE_KEY = "gengate.trace_id"
#: A trace id a caller may choose: 8 to 64 letters, digits, `-`, `_`, `.` or `:`.
_TRACE_ID = re.compile(rb"[0-9A-Za-z][0-9A-Za-z_.:-]{7,63}")
#: Headers a handler wants on its response, whatever the response (the rate-limit counts).
RESPONSE_HEADERS_KEY = "gengate.response_headers"


class TraceMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = (b"x-trace-id", trace_id_of(scope).encode())

        started = False

        async def send_with_trace(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                note_status(message["status"])
                extra = scope.get(RESPONSE_HEADERS_KEY, ())
                message["headers"] = [*message.get("headers", ()), header, *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_with_trace)
        except Exception:
            # Starlette re-raises an unexpected error after its handler answered `api_error`
            # (and logged it with the trace id); raised further, the server would log it
            # twice and drop the client's keep-alive connection.
            if not started:
                raise


def trace_id_of(scope: Scope) -> str:
    """The request's trace id, minted here and nowhere else: the first layer that asks (the hot
    path, this middleware, an error handler) keeps it in the scope, every later one
    reads it, so a body's `trace_id` and the `X-Trace-Id` header always agree."""
    trace_id: str | None = scope.get(TRACE_KEY)
    if trace_id is None:
        trace_id = scope[TRACE_KEY] = _sent_trace_id(scope) or new_trace_id()
    return trace_id


def _sent_trace_id(scope: Scope) -> str | None:
    """The caller's `X-Trace-Id` when it is a plausible id (a gateway relaying its task here
    sends its own): one trace id then names the task in both gateways' logs."""
    for name, value in scope.get("headers", ()):
        if name == b"x-trace-id":
            return value.decode() if _TRACE_ID.fullmatch(value) else None
    return None
