"""The provider interface: what a model backend receives and returns.

A provider gets a task's validated input and a :class:`RunContext` (progress, cancel signal,
a folder to write files into) and returns the files it made. It raises
:class:`ProviderFailure` for failures with a `failCode`; anything else it raises is recorded
as `INTERNAL_ERROR`. It never sees the store, HTTP requests or other tasks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import msgspec

from gengate.domain.files import OutputFile


class ProviderFailure(Exception):
    """The task failed for a reason the provider knows: ends it `failed` with `fail_code`.

    `transient` marks failures worth another attempt (an upstream 503), as opposed to
    permanent ones (bad input, content violation).
    """

    def __init__(self, fail_code: str, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.fail_code = fail_code
        self.message = message
        self.transient = transient


@dataclass(slots=True)
class RunContext:
    """What a provider may use while it runs one task.

    Fields: `task_id`, `model`, `mode`, `options` (the model's provider options),
    `output_dir` (an empty folder of this attempt), `cancel` (set when the task is canceled;
    check it between steps), `on_progress` (how progress reaches the worker), `on_upstream`
    (a relay reports the upstream's task id and trace id here as soon as it has them, so they
    are kept with the task), `on_log` (a line of the run's log: kept with the task, shown by
    the doors that have logs), `on_output` (plain output values beside the files: a model
    server's numbers or text; kept with the task as its `output_json`).
    """

    task_id: str
    model: str
    mode: str
    output_dir: Path
    options: Mapping[str, Any] = field(default_factory=dict)
    #: Which claim of the task this is, from 1: a retry after a transient failure counts up.
    attempt: int = 1
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    on_progress: Callable[[int], None] = lambda _percent: None
    on_upstream: Callable[[str, str | None], None] = lambda _task_id, _trace_id: None
    on_log: Callable[[str], None] = lambda _line: None
    on_output: Callable[[Any], None] = lambda _value: None

    def progress(self, percent: float) -> None:
        """Report progress, 0-100; values outside are clamped."""
        self.on_progress(max(0, min(100, int(percent))))

    def log(self, text: str) -> None:
        """Add to the run's log: one call may carry several lines (a model server's log chunk)."""
        self.on_log(text)

    def output(self, value: Any) -> None:
        """Set the run's plain (non-file) output: any JSON value; the last call wins."""
        self.on_output(value)


class Provider(Protocol):
    """A backend that runs tasks for one or more models.

    A provider whose outputs are all in memory (`OutputFile.data`) may set a class attribute
    `writes_files = False`: its runs then get no staging folder, which saves several file-system
    calls per task (the demo models do this).
    """

    #: Mode -> input struct this provider accepts. The first mode is the default.
    inputs: Mapping[str, type[msgspec.Struct]]

    async def run(self, input: dict[str, Any], ctx: RunContext) -> Sequence[OutputFile]: ...


@runtime_checkable
class Closable(Protocol):
    """A provider holding resources (a connection pool) releases them here at shutdown."""

    async def aclose(self) -> None: ...
