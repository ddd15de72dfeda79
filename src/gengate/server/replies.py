"""Errors the server answers before the application sees a request, in the gateway's envelope
with a fresh trace id in the body and in `X-Trace-Id`, like every other error."""

from __future__ import annotations

import http
import logging
import time
from typing import TYPE_CHECKING

import orjson

from gengate.api.errors import dialect_for_path
from gengate.dialects import error_envelope
from gengate.domain.errors import BadRequest, GatewayError, Unavailable
from gengate.domain.ids import new_trace_id

if TYPE_CHECKING:
    from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Scope

log = logging.getLogger("gengate.server")

#: A head over the limit: `bad_request`, as NoApi is `no_api` with 405, under HTTP's own status.
HEAD_TOO_LARGE = 431
#: How often, at most, a process says that it is turning connections away.
_WARN_EVERY_S = 60.0
_last_warned = -_WARN_EVERY_S


def head_too_large(limit: int) -> GatewayError:
    return BadRequest(
        f"The request line and headers are larger than this server accepts ({limit} bytes).",
        status=HEAD_TOO_LARGE,
    )


def malformed() -> GatewayError:
    return BadRequest(
        "Malformed HTTP request: the request line, a header (such as Content-Length) or the "
        "body's framing could not be parsed."
    )


def over_capacity(open_connections: int) -> GatewayError:
    _warn_over_capacity(open_connections)
    return Unavailable(
        "This server has too many open connections; retry shortly.", headers={"Retry-After": "1"}
    )


def render(error: GatewayError, path: str, extra_headers: list[tuple[bytes, bytes]]) -> bytes:
    """The whole HTTP/1.1 response, closing the connection."""
    trace_id = new_trace_id()
    body = orjson.dumps(error_envelope(dialect_for_path(path), error, trace_id))
    phrase = http.HTTPStatus(error.status).phrase
    lines = [f"HTTP/1.1 {error.status} {phrase}".encode()]
    lines += [name + b": " + value for name, value in extra_headers]
    lines += [name.encode() + b": " + value.encode() for name, value in _headers(error, trace_id, body)]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _headers(error: GatewayError, trace_id: str, body: bytes) -> list[tuple[str, str]]:
    return [
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
        ("x-trace-id", trace_id),
        *error.headers.items(),
        ("connection", "close"),
    ]


def reply_app(error: GatewayError) -> ASGI3Application:
    """An ASGI app answering every request with `error` (the request's head has been read)."""

    async def app(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        trace_id = new_trace_id()
        body = orjson.dumps(error_envelope(dialect_for_path(str(scope.get("path", "/"))), error, trace_id))
        headers = [(name.encode(), value.encode()) for name, value in _headers(error, trace_id, body)]
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return app


def _warn_over_capacity(open_connections: int) -> None:
    global _last_warned  # noqa: PLW0603 - one timestamp per process, read on a rare path
    now = time.monotonic()
    if now - _last_warned >= _WARN_EVERY_S:
        _last_warned = now
        log.warning(
            "%d connections open: new ones get 503 (raise GENGATE_MAX_CONNECTIONS or add processes)",
            open_connections,
        )
