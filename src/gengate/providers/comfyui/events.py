"""Following one prompt: ComfyUI's websocket while it lasts, its history as the fallback.

A run opens `/ws?clientId=<ours>` before it queues its prompt, so no message is missed; ComfyUI
sends a prompt's messages to the client id it was queued with (`execution_start`,
`execution_cached`, `executing {node}`, `progress {value, max}`, `executed`, then
`execution_success`, `execution_error` or `execution_interrupted`, and last `executing` with
`node: null` once the history entry is written), and broadcasts `status` and interrupts, so each is
checked for our prompt id. Binary frames are previews (types 1, 2, 4) and ignored, except type 3,
a node's text, which goes to the run's log. Should the socket fail, `GET /history/{prompt_id}` is
polled instead, and `GET /queue` tells a prompt that is still coming from one that vanished.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import WebSocketException

from gengate.providers.base import RunContext
from gengate.providers.comfyui.client import ComfyServer, failure_for_execution
from gengate.providers.relay.errors import provider_fault
from gengate.providers.relay.follow import canceled

log = logging.getLogger(__name__)

#: `protocol.BinaryEventTypes.TEXT`: a node's text for the user, `>I` node-id length, id, text.
_TEXT_FRAME = 3
_LOG_LIMIT = 2000
_FIRST_POLL_S = 0.05


@dataclass(slots=True)
class Watch:
    """What the socket told of one prompt. Fields: `server`, `prompt_id`, `graph` (to name the
    nodes in the log), `ended` (a message that ends the prompt arrived)."""

    server: ComfyServer
    prompt_id: str
    graph: dict[str, Any]
    ended: bool = False
    _percent: float = 0.0

    def node(self, node_id: Any) -> str:
        class_type = self.graph.get(str(node_id), {}).get("class_type", "?")
        return f"node {node_id} ({class_type})"

    def on_text(self, raw: str, ctx: RunContext) -> None:
        """One JSON message: progress and log lines; an error or interrupt raises at once."""
        try:
            message = json.loads(raw)
        except ValueError:
            return
        if not isinstance(message, dict) or not isinstance(message.get("data"), dict):
            return
        kind, data = message.get("type"), message["data"]
        if data.get("prompt_id", self.prompt_id) != self.prompt_id:
            return  # a broadcast about someone else's prompt
        if kind == "progress":
            self._progress(data, ctx)
        elif kind in ("execution_success", "execution_error", "execution_interrupted"):
            self._end(kind, data, ctx)
        elif kind == "executing":
            if data.get("node") is None:
                self.ended = True
            else:
                ctx.log(f"ComfyUI: {self.node(data['node'])} running")
        elif kind == "execution_start":
            ctx.log("ComfyUI: execution started")
        elif kind == "execution_cached" and data.get("nodes"):
            ctx.log("ComfyUI: cached: " + ", ".join(self.node(n) for n in data["nodes"]))

    def _progress(self, data: dict[str, Any], ctx: RunContext) -> None:
        value, top = data.get("value"), data.get("max")
        if isinstance(value, int | float) and isinstance(top, int | float) and top > 0:
            # Never back, and 100 only once the outputs are in.
            self._percent = max(self._percent, min(99.0, 100.0 * value / top))
            ctx.progress(self._percent)

    def _end(self, kind: str, data: dict[str, Any], ctx: RunContext) -> None:
        if kind == "execution_error":
            failure = failure_for_execution(data)
            ctx.log("ComfyUI: " + failure.message.removeprefix("Upstream provider error: "))
            raise failure
        if kind == "execution_interrupted":
            ctx.log(f"ComfyUI: interrupted at {self.node(data.get('node_id'))}")
            raise canceled()
        self.ended = True

    def on_bytes(self, frame: bytes, ctx: RunContext) -> None:
        """Previews are dropped; a node's text is logged."""
        if len(frame) < 8 or struct.unpack(">I", frame[:4])[0] != _TEXT_FRAME:
            return
        (size,) = struct.unpack(">I", frame[4:8])
        node_id = frame[8 : 8 + size].decode("utf-8", "replace")
        text = frame[8 + size :].decode("utf-8", "replace").strip()
        if text and str(node_id) in self.graph:
            ctx.log(f"ComfyUI: {self.node(node_id)}: {text[:_LOG_LIMIT]}")


async def listen(ws: ClientConnection, watch: Watch, ctx: RunContext) -> None:
    """Read the socket until the prompt ends; a dropped socket only logs (history takes over)."""
    try:
        async for frame in ws:
            if isinstance(frame, str):
                watch.on_text(frame, ctx)
            else:
                watch.on_bytes(frame, ctx)
            if watch.ended:
                return
    except (WebSocketException, OSError) as exc:
        log.warning(
            "task %s: ComfyUI websocket of %s lost (%s); polling its history",
            ctx.task_id,
            watch.server.url,
            exc,
        )
        return
    log.warning("task %s: ComfyUI websocket of %s closed; polling its history", ctx.task_id, watch.server.url)


async def outcome(watch: Watch, ctx: RunContext, poll_s: float) -> dict[str, Any]:
    """The prompt's history entry once it has one; its failure, translated.

    Right after the socket says the prompt ended the entry is there (or a moment later: the
    success message comes before the entry is written), so polling starts fast."""
    delay = _FIRST_POLL_S if watch.ended else poll_s
    while True:
        entry = await watch.server.history(watch.prompt_id)
        if entry is None and not watch.ended and await watch.server.whereabouts(watch.prompt_id) is None:
            entry = await watch.server.history(watch.prompt_id)  # it may have ended in between
            if entry is None:
                raise provider_fault(f"prompt {watch.prompt_id} is gone from {watch.server.url} (restarted?)")
        if entry is not None:
            _raise_for_status(entry, watch)
            return entry
        await asyncio.sleep(delay)
        delay = min(poll_s, delay * 2)


def _raise_for_status(entry: dict[str, Any], watch: Watch) -> None:
    found = entry.get("status")
    status: dict[str, Any] = found if isinstance(found, dict) else {}
    if status.get("status_str", "success") == "success":
        return
    for item in status.get("messages") or []:
        if isinstance(item, list) and len(item) == 2 and isinstance(item[1], dict):
            if item[0] == "execution_error":
                raise failure_for_execution(item[1])
            if item[0] == "execution_interrupted":
                raise canceled()
    raise provider_fault(f"prompt {watch.prompt_id} ended with status {status.get('status_str')!r}")


async def follow(watch: Watch, ws: ClientConnection | None, ctx: RunContext, poll_s: float) -> dict[str, Any]:
    """The ended prompt's history entry: the socket first (progress, logs), then the history."""
    if ws is not None:
        await listen(ws, watch, ctx)
    return await outcome(watch, ctx, poll_s)


async def quietly(work: Callable[[], Awaitable[None]], seconds: float, what: str) -> None:
    """Best effort, bounded: a failure or a slow answer is only logged."""
    try:
        async with asyncio.timeout(seconds):
            await work()
    except Exception as exc:
        log.warning("%s failed: %s", what, exc)
