"""The Replicate dialect: prediction objects, webhook bodies and problem-detail errors.

What the official `replicate` client parses: a prediction (`id, model, version, status, input,
output, logs, error, metrics, created_at, started_at, completed_at, urls`) and, on an error,
an RFC 7807 body whose `title` and `detail` become its `ReplicateError`. A gengate model
`demo-image` is `{owner}/demo-image` here (the owner is a setting), a model whose own id is
already `owner/name` is that id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import orjson

from gengate.dialects.links import Links
from gengate.domain.errors import GatewayError
from gengate.domain.states import FailCode, TaskState
from gengate.domain.task import Task, TaskLog

#: No `{code, message, data}` envelope: a prediction is answered as it is.
MESSAGE_FIELD: str | None = None
DEFAULT_OWNER = "gengate"

#: Replicate's statuses by ours; a failed task whose failCode is CANCELED is `canceled`.
STATUS_NAMES: Mapping[TaskState, str] = {
    TaskState.PENDING: "starting",
    TaskState.PROCESSING: "processing",
    TaskState.SUCCESS: "succeeded",
    TaskState.FAILED: "failed",
}
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled"})
#: The events a webhook can be asked for (`webhook_events_filter`).
WEBHOOK_EVENTS = ("start", "output", "logs", "completed")


def status_name(task: Task) -> str:
    """`starting`, `processing`, `succeeded`, `failed` or `canceled`."""
    if task.state is TaskState.FAILED and task.fail_code == FailCode.CANCELED:
        return "canceled"
    return STATUS_NAMES[task.state]


def model_ref(model_id: str, owner: str) -> str:
    """The `owner/name` a client names a model by."""
    return model_id if "/" in model_id else f"{owner}/{model_id}"


def model_candidates(reference: str, owner: str) -> list[str]:
    """The gengate model ids a Replicate reference may name, most likely first: `owner/name`
    of the configured owner is `name`; any other reference is taken as a model id itself.
    A `:version` suffix is dropped (a gengate model has one version)."""
    reference = reference.partition(":")[0]
    first, slash, rest = reference.partition("/")
    if slash and first == owner:
        return [rest, reference]
    return [reference]


def iso_time(ms: int | None) -> str | None:
    """Unix ms as ISO 8601 in UTC, as Replicate writes them (`2024-01-01T00:00:00.000Z`)."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def output_of(task: Task, links: Links) -> Any:
    """A succeeded task's `output`: a URL for one file, a list for several or for images (as
    Replicate's image models answer), else its plain output values; None until it succeeds."""
    if task.state is not TaskState.SUCCESS:
        return None
    if task.files:
        urls = links.result_urls(task)
        if len(urls) == 1 and not task.files[0].content_type.startswith("image/"):
            return urls[0]
        return urls
    if task.output_json is not None:
        return orjson.Fragment(task.output_json)
    return None


def logs_text(logs: Sequence[TaskLog] | None) -> str | None:
    """The run's log lines as one text; None when not read (a listing)."""
    if logs is None:
        return None
    return "\n".join(entry.line for entry in logs)


def prediction(
    task: Task,
    links: Links,
    logs: Sequence[TaskLog] | None = (),
    *,
    api_base: str = "",
    owner: str = DEFAULT_OWNER,
    status: str | None = None,
) -> dict[str, Any]:
    """The prediction object of `task`; `status` overrides the task's own (a held create that
    ran out answers `starting`, the one status on which the client goes on polling)."""
    ref = model_ref(task.model, owner)
    error = None
    if task.state is TaskState.FAILED and task.fail_code != FailCode.CANCELED:
        error = task.fail_msg or task.fail_code
    metrics: dict[str, Any] = {}
    if task.cost_time is not None:
        metrics["predict_time"] = task.cost_time / 1000
    url = f"{api_base}/v1/predictions/{task.id}"
    return {
        "id": task.id,
        "model": ref,
        "version": ref,
        "status": status or status_name(task),
        "input": orjson.Fragment(task.input_json),
        "output": output_of(task, links),
        "logs": logs_text(logs),
        "error": error,
        "metrics": metrics,
        "created_at": iso_time(task.create_time),
        "started_at": iso_time(task.start_time),
        "completed_at": iso_time(task.complete_time) if task.state.is_terminal() else None,
        "urls": {"get": url, "cancel": url + "/cancel", "stream": url + "/stream"},
    }


def webhook_wants(task: Task, event: str) -> bool:
    """Whether the task's webhook wants a running task's `event` (`start`, `logs`): only when its
    `webhook_events_filter` names it (without a filter, Replicate sends outputs and the
    completion, and a gengate model's output comes with its completion)."""
    if task.callback_url is None:
        return False
    events = task.request.get("webhook_events_filter")
    return isinstance(events, list) and event in events


def callback_body(task: Task, links: Links, logs: Sequence[TaskLog] | None = None) -> bytes:
    """A webhook's body: the prediction object. The server's links carry its base URL and the
    model owner; links without them give relative URLs under the default owner. `logs` null:
    not read."""
    api_base = str(getattr(links, "api_base", ""))
    owner = str(getattr(links, "model_owner", DEFAULT_OWNER))
    return orjson.dumps(prediction(task, links, logs, api_base=api_base, owner=owner))


def error_envelope(error: GatewayError, trace_id: str) -> dict[str, Any]:
    """An RFC 7807 problem (`title`, `detail`, `status`), which the client raises as its
    `ReplicateError`, with gengate's `error` object and `trace_id` beside it."""
    try:
        title = HTTPStatus(error.status).phrase
    except ValueError:
        title = "Error"
    return {
        "title": title,
        "detail": error.message,
        "status": error.status,
        "error": {"code": error.code, "message": error.message},
        "trace_id": trace_id,
        **error.extra,
    }
