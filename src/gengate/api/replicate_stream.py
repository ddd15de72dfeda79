"""A prediction's `urls.stream`: Server-Sent Events as Replicate sends them.

`logs` (one event per new log line), then at the end `output` (one event per output item:
each file's URL, or the plain output value), or `error` (`{"detail": ...}`) for a failed run,
and `done` last (`{}`, or `{"reason": "canceled"}`). The official client reads every event
that has an `id`, raises on `error` and stops at `done`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.responses import Response, StreamingResponse

from gengate.api.context import ApiContext
from gengate.dialects.replicate import output_of, status_name
from gengate.domain.states import TaskState
from gengate.domain.task import Task

#: Log lines are not signalled as changes are: between changes they are read this often.
LOG_POLL_S = 0.5
#: A comment this often keeps proxies from closing a quiet stream.
KEEPALIVE_S = 15.0


def prediction_events(ctx: ApiContext, task: Task) -> Response:
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(_events(ctx, task), media_type="text/event-stream", headers=headers)


def event(event_id: int, name: str, data: str) -> bytes:
    """One event; a multi-line `data` is sent as several `data:` lines, which a reader joins."""
    lines = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"id: {event_id}\nevent: {name}\n{lines}\n".encode()


def output_items(task: Task, ctx: ApiContext) -> list[str]:
    """The `output` events of a succeeded task: each URL of a list, else the one value
    (a string as it is, anything else as JSON)."""
    output = output_of(task, ctx.links)
    if output is None:
        return []
    if isinstance(output, orjson.Fragment):
        output = orjson.loads(output.contents)
    items: list[Any] = output if isinstance(output, list) else [output]
    return [item if isinstance(item, str) else orjson.dumps(item).decode() for item in items]


async def _events(ctx: ApiContext, task: Task) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    event_id = 0
    sent_lines = 0
    last_sent = loop.time()
    while True:
        if task.attempts > 0:
            logs = await ctx.tasks.store.task_logs(task.id)
            for entry in logs[sent_lines:]:
                event_id += 1
                last_sent = loop.time()
                yield event(event_id, "logs", entry.line)
            sent_lines = max(sent_lines, len(logs))
        if task.state.is_terminal():
            break
        if loop.time() - last_sent >= KEEPALIVE_S:
            last_sent = loop.time()
            yield b": keep-alive\n\n"
        task = await ctx.tasks.wait_for_change(task, LOG_POLL_S)
    if task.state is TaskState.SUCCESS:
        for item in output_items(task, ctx):
            event_id += 1
            yield event(event_id, "output", item)
    status = status_name(task)
    if status == "failed":
        event_id += 1
        yield event(event_id, "error", orjson.dumps({"detail": task.fail_msg or task.fail_code}).decode())
    done = {"reason": "canceled"} if status == "canceled" else {}
    yield event(event_id + 1, "done", orjson.dumps(done).decode())
