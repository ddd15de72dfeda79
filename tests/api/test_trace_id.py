"""One trace id per request, minted in one place (`trace_id_of`): whichever layer asks first (the
hot path, the trace middleware, an error handler) keeps it in the scope, and every later one
reads the same id, so a body's `trace_id` and `X-Trace-Id` agree."""

from __future__ import annotations

import re
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from gengate.api.trace import TRACE_KEY, TraceMiddleware, trace_id_of

UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def test_the_first_ask_mints_and_every_later_ask_reads_it() -> None:
    scope: dict[str, Any] = {"type": "http"}
    first = trace_id_of(scope)
    assert UUID4.fullmatch(first)
    assert trace_id_of(scope) == first
    assert scope[TRACE_KEY] == first


def test_each_request_gets_its_own() -> None:
    assert trace_id_of({"type": "http"}) != trace_id_of({"type": "http"})


async def test_the_middleware_answers_the_id_the_application_read() -> None:
    seen: list[str] = []
    sent: list[Message] = []

    async def app(scope: Scope, _receive: Receive, send: Send) -> None:
        seen.append(trace_id_of(scope))
        await send({"type": "http.response.start", "status": 204, "headers": []})

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    await TraceMiddleware(app)({"type": "http"}, receive, send)
    assert (b"x-trace-id", seen[0].encode()) in sent[0]["headers"]
