"""Request bodies: refused past the size limit before they are read, and JSON parsed strictly.

`BodyLimit` guards every route: a declared `Content-Length` over the limit is answered 413
before a byte of the body is read, and a chunked body is cut as soon as it passes the limit.
`read_json_object` then parses what a route reads: malformed JSON, NaN and Infinity, numbers
out of range, invalid UTF-8 and deep nesting are all `bad_request`.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gengate.api.errors import dialect_for_path, error_body
from gengate.api.hotpath import header_value
from gengate.api.trace import trace_id_of
from gengate.domain.errors import BadRequest, GatewayError, PayloadTooLarge

#: Deepest nesting of objects and arrays a body may have. orjson parses up to 1024 levels but
#: writes only 254, and no generation input needs more than a handful.
MAX_DEPTH = 32


class BodyLimit:
    """Refuses bodies over `limit` bytes on every route, before reading them."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = header_value(scope, b"content-length")
        if declared is not None:
            # The server stops reading at the declared length, so checking it is enough.
            error = _declared_problem(declared, self.limit)
            if error is not None:
                await _refuse(error, scope, send)
                return
            await self.app(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:  # raised inside the route: rendered like its own errors
                    raise too_large(self.limit)
            return message

        await self.app(scope, counted, send)


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than {limit} bytes.")


def _declared_problem(declared: str, limit: int) -> GatewayError | None:
    if not (declared.isascii() and declared.isdigit()) or len(declared) > 18:
        return BadRequest("Invalid Content-Length header.")
    return too_large(limit) if int(declared) > limit else None


async def _refuse(error: GatewayError, scope: Scope, send: Send) -> None:
    body = orjson.dumps(error_body(error, trace_id_of(scope), dialect_for_path(scope["path"])))
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    # The unread body is left on the connection: close it rather than read it to reuse it.
    headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object; `BodyLimit` has checked its declared size, and the count
    here cuts a body without one (chunked) even where the app runs without that guard."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise BadRequest("The request body is empty; send a JSON object.")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc.msg} at byte {exc.pos}.") from None
    if not isinstance(value, dict):
        raise BadRequest("The request body must be a JSON object.")
    if _too_deep(value, MAX_DEPTH):
        raise BadRequest(f"The request body is nested deeper than {MAX_DEPTH} levels.")
    return value


def optional_string(body: dict[str, Any], name: str) -> str | None:
    """A body field that, when present and not null, must be a string."""
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"`{name}` must be a string.")
    return value


def _too_deep(value: Any, limit: int) -> bool:
    """Whether containers nest deeper than `limit`; iterative, so depth costs no stack."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values() if isinstance(child, dict | list))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item if isinstance(child, dict | list))
    return False
