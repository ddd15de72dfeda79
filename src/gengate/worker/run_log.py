"""A run's log lines and plain output values, on their way to the store.

A model server may log thousands of lines: they are buffered and written in batches, one write
in flight at a time (as progress is), and bounded per attempt so that a chatty model cannot
fill the database. The last batch is written before the task ends, so a client that sees the
task finished sees its whole log.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import orjson

from gengate.background import spawn
from gengate.domain.clock import now_ms
from gengate.domain.states import FailCode
from gengate.domain.task import TaskLog
from gengate.providers.base import ProviderFailure
from gengate.store.base import Store

log = logging.getLogger(__name__)

#: What one attempt keeps of its log; past either bound, lines are counted and dropped.
MAX_LINES = 5_000
MAX_BYTES = 512 * 1024
#: A longer line is cut here (a progress bar redrawn without newlines).
MAX_LINE_CHARS = 4_000
#: The least time between two `logs` callbacks of a task (Replicate sends at most two a second).
LOGS_CALLBACK_GAP_MS = 500
#: The largest plain output a run may set, as JSON.
MAX_OUTPUT_BYTES = 1 << 20


@dataclass
class RunLog:
    """The log and output of one claim (`task_id`, `owner`, `attempt`) of a task."""

    store: Store
    task_id: str
    owner: str
    attempt: int
    output_json: str | None = None
    #: Each batch written also owes the task's callback URL a `logs` delivery (Replicate's webhook
    #: event; the store spaces them `LOGS_CALLBACK_GAP_MS` apart), except the last: the end's has it.
    callback_logs: bool = False
    _pending: list[TaskLog] = field(default_factory=list)
    _writer: asyncio.Task[None] | None = None
    _kept_lines: int = 0
    _kept_bytes: int = 0
    _dropped: int = 0

    def add(self, text: str) -> None:
        """Keep `text` (one or more lines) for the next batch."""
        at = now_ms()
        for line in text.splitlines() or [""]:
            cut = line[:MAX_LINE_CHARS]
            size = len(cut.encode())
            if self._kept_lines >= MAX_LINES or self._kept_bytes + size > MAX_BYTES:
                self._dropped += 1
                continue
            self._kept_lines += 1
            self._kept_bytes += size
            self._pending.append(TaskLog(at, cut, self.attempt))
        if self._pending and (self._writer is None or self._writer.done()):
            self._writer = spawn(self._write(), f"log lines of task {self.task_id}")

    def set_output(self, value: Any) -> None:
        """Keep the run's plain output (any JSON value); the last call wins."""
        encoded = orjson.dumps(value)
        if len(encoded) > MAX_OUTPUT_BYTES:
            raise ProviderFailure(
                FailCode.PROVIDER_ERROR,
                f"The model's output values take {len(encoded):,} bytes as JSON; at most "
                f"{MAX_OUTPUT_BYTES:,} are kept.",
            )
        self.output_json = encoded.decode()

    async def flush(self) -> None:
        """Write what is buffered (and a note of what was dropped) before the task ends."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
        if self._dropped:
            note = f"[gengate] {self._dropped:,} more log lines were not kept (limit: {MAX_LINES:,} lines, "
            note += f"{MAX_BYTES // 1024} KiB per attempt)"
            self._pending.append(TaskLog(now_ms(), note, self.attempt))
            self._dropped = 0
        try:
            await self._write(last=True)
        except Exception:  # a log lost is no reason to lose the task's result
            log.warning("log lines of task %s not kept", self.task_id, exc_info=True)

    def stop(self) -> None:
        if self._writer is not None:
            self._writer.cancel()

    async def _write(self, *, last: bool = False) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            kept = await self.store.append_logs(self.task_id, self.owner, self.attempt, batch)
            if kept and self.callback_logs and not last:
                await self.store.add_logs_callback(
                    self.task_id, self.owner, self.attempt, LOGS_CALLBACK_GAP_MS
                )
