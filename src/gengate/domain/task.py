"""The task record as the store holds it and every layer reads it."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from gengate.domain.dialect import Dialect
from gengate.domain.states import TaskState


class ResultFile(msgspec.Struct, frozen=True, gc=False):
    """One output of a task: its `name` inside the task's folder, its MIME type and size in bytes."""

    name: str
    content_type: str
    size: int


class Task(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """A generation task.

    Fields: `id` (`task_...`), `key_id` (owner), `model`, `mode`, `state`, `input_json` (validated
    input, defaults filled), `request_json` (the client's original body, echoed by the KIE dialect),
    `request_type` (`async`/`sync`/`callback`), `callback_url`, `priority`, the Unix-ms times
    `create_time`, `start_time`, `complete_time` and `cost_time` (ms of work), `progress`
    (0-100), `files` (outputs on success), `fail_code`/`fail_msg` (on failure), `attempts`
    (claims so far), `lease_owner`/`lease_expires` (the worker holding it), `trace_id` (of the
    submit request), `dialect` (the wire format it was created in: its callbacks use it),
    `upstream` (a relayed task's reference upstream, JSON: provider, task id, trace id),
    `charge` (credits taken at submit; given back once if the task fails or is canceled),
    `output_json` (plain output values beside the files, JSON text, on success; None when the
    model made only files). The run's log lines are kept apart (:class:`TaskLog`, read with
    `Store.task_logs`): status reads never carry them.
    """

    id: str
    key_id: str
    model: str
    mode: str
    state: TaskState
    input_json: str
    request_json: str
    request_type: str = "async"
    callback_url: str | None = None
    priority: int = 0
    create_time: int
    start_time: int | None = None
    complete_time: int | None = None
    cost_time: int | None = None
    progress: int | None = None
    files: tuple[ResultFile, ...] = ()
    fail_code: str | None = None
    fail_msg: str | None = None
    attempts: int = 0
    lease_owner: str | None = None
    lease_expires: int | None = None
    trace_id: str | None = None
    dialect: Dialect = Dialect.APIXO
    upstream: str | None = None
    charge: int = 0
    output_json: str | None = None
    #: The W3C `traceparent` of the task's submit span, when tracing was on. Written at submit
    #: and read back only by a claim (status reads leave it None: they never select it).
    trace_context: str | None = None

    @property
    def input(self) -> dict[str, Any]:
        """The validated input; kept as JSON text so that status reads never parse it."""
        value: dict[str, Any] = orjson.loads(self.input_json)
        return value

    @property
    def request(self) -> dict[str, Any]:
        value: dict[str, Any] = orjson.loads(self.request_json)
        return value


class TaskLog(msgspec.Struct, frozen=True, gc=False):
    """One line of a run's log: `at` (Unix ms), the `line` without its newline, the `attempt` it came from."""

    at: int
    line: str
    attempt: int = 1


class Claim(msgspec.Struct, frozen=True, gc=False):
    """A task handed to a worker: the task and the attempt number that fences its completion."""

    task: Task
    attempt: int
