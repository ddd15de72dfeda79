"""Input limits every route shares, checked before any route runs.

A declared `Content-Length` over the body limit is answered 413 before a byte of the body is
read, and a body without one (chunked) is cut as soon as it passes the limit. A query
parameter given twice is a 400: none of our parameters is a list, and which of two values a
server reads (the first? the last?) is not something a client should have to guess.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gengate.api.errors import dialect_for_path
from gengate.api.hotpath import header_value
from gengate.api.trace import trace_id_of
from gengate.dialects import error_envelope
from gengate.domain.errors import BadRequest, GatewayError, PayloadTooLarge


class RequestGuard:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        admitted = self.admit(scope, receive)
        if isinstance(admitted, GatewayError):
            status, headers, body = self.refusal(admitted, scope)
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, admitted, send)

    def admit(self, scope: Scope, receive: Receive) -> Receive | GatewayError:
        """The error that refuses a request before a byte of its body is read, or the `receive`
        to read the body with (cut past the limit when no length was declared). The hot path
        (:mod:`gengate.api.hotpath`) asks this too, for the hot routes with a body."""
        declared = header_value(scope, b"content-length")
        error = _declared_problem(declared, self.limit) if declared is not None else None
        if error is None and b"=" in scope["query_string"]:
            error = repeated_parameter(scope["query_string"])
        if error is not None:
            return error
        if declared is not None:  # the server reads no further than the declared length
            return receive
        limit = self.limit
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # raised inside the route: rendered like its own errors
                    raise too_large(limit)
            return message

        return counted

    def refusal(self, error: GatewayError, scope: Scope) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """The status, headers and body refusing a request `admit` did not let in."""
        body = orjson.dumps(error_envelope(dialect_for_path(scope["path"]), error, trace_id_of(scope)))
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        if isinstance(error, PayloadTooLarge):
            # The unread body is left on the connection: close it rather than read it to reuse it.
            headers.append((b"connection", b"close"))
        return error.status, headers, body


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than {limit} bytes.")


def repeated_parameter(query_string: bytes) -> BadRequest | None:
    seen: set[str] = set()
    for name, _value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name in seen:
            return BadRequest(f"The query parameter `{name}` is given more than once.")
        seen.add(name)
    return None


def _declared_problem(declared: str, limit: int) -> GatewayError | None:
    if not (declared.isascii() and declared.isdigit()) or len(declared) > 18:
        return BadRequest("Invalid Content-Length header.")
    return too_large(limit) if int(declared) > limit else None
