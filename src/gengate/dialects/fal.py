"""The fal queue dialect: queue answers, status bodies, results, webhooks and errors for fal-client.

A fal app is `owner/alias` (`gengate/demo-image`); a request is our task, its `request_id`
the task id. Status names fold our states into fal's three: pending is `IN_QUEUE`,
processing `IN_PROGRESS`, success and failure both `COMPLETED` (a failure with `error` and
`error_type`). A failed request's result is an error (`RequestFailed`), as fal answers it.
Results name files the way fal's own models do: `images` when every file is an image, `video`
for a video, `files` otherwise; plain output values the model made are merged in beside them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from gengate.dialects.links import Links
from gengate.dialects.xhuo import TaskFailed
from gengate.domain.errors import GatewayError
from gengate.domain.states import FailCode, TaskState
from gengate.domain.task import ResultFile, Task, TaskLog

#: fal's errors are `{"detail": ...}` bodies, not a `{code, message}` envelope.
MESSAGE_FIELD: str | None = None

STATUS_NAMES: Mapping[TaskState, str] = {
    TaskState.PENDING: "IN_QUEUE",
    TaskState.PROCESSING: "IN_PROGRESS",
    TaskState.SUCCESS: "COMPLETED",
    TaskState.FAILED: "COMPLETED",
}

#: HTTP status of a failed request's result, by failCode; any other code is 500. Never 408,
#: 409 or 429: fal-client retries those, and a failed request fails the same way again.
FAIL_STATUS: Mapping[str, int] = {
    FailCode.CONTENT_VIOLATION: 422,
    FailCode.INVALID_INPUT: 422,
    FailCode.TIMEOUT: 504,
    FailCode.CANCELED: 400,
}

#: Queue priority header values and the task priority each maps to (workers claim higher first).
PRIORITIES: Mapping[str, int] = {"normal": 0, "low": -1}


def app_id(model: str, owner: str) -> str:
    """The fal app (`owner/alias`) a model answers to: a model id with a slash is its own app
    (its first two segments; the rest is a sub-path), any other is `<owner>/<model>`."""
    if "/" in model:
        return "/".join(model.split("/")[:2])
    return f"{owner}/{model}"


def queue_urls(base: str, app: str, request_id: str) -> dict[str, str]:
    """Where the client reads a request: calls by id name the app without its sub-path."""
    response_url = f"{base}/fal/{app}/requests/{request_id}"
    return {
        "response_url": response_url,
        "status_url": response_url + "/status",
        "cancel_url": response_url + "/cancel",
    }


def submitted(task: Task, urls: Mapping[str, str], queue_position: int | None) -> dict[str, Any]:
    """The answer to a submit: the request's id, its URLs and its place in the queue."""
    return {
        "status": STATUS_NAMES[task.state],
        "request_id": task.id,
        **urls,
        "queue_position": queue_position or 0,
    }


def log_entry(log: TaskLog) -> dict[str, Any]:
    """One line of the run's log as fal's `logs` entries are: `{message, level, source, timestamp}`."""
    return {"message": log.line, "level": "INFO", "source": "user", "timestamp": iso_time(log.at)}


def iso_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def status_body(
    task: Task,
    urls: Mapping[str, str],
    *,
    queue_position: int | None = None,
    logs: Sequence[TaskLog] | None = None,
) -> dict[str, Any]:
    """A status read: `status` and `logs` always (null when not asked for); `queue_position`
    while queued; `metrics` once completed, and `error`/`error_type` when it failed."""
    body: dict[str, Any] = {
        "status": STATUS_NAMES[task.state],
        "request_id": task.id,
        **urls,
        "logs": None if logs is None else [log_entry(log) for log in logs],
    }
    if task.state is TaskState.PENDING:
        body["queue_position"] = queue_position or 0
    elif task.state.is_terminal():
        body["metrics"] = {"inference_time": None if task.cost_time is None else task.cost_time / 1000}
        if task.state is TaskState.FAILED:
            body["error"] = task.fail_msg or task.fail_code
            body["error_type"] = task.fail_code
    return body


def result_body(task: Task, links: Links) -> dict[str, Any]:
    """A successful request's result: its files as fal's models name them (`images`, `video` or
    `files`), `seed` when the input fixed one, and the model's plain output values: an object's
    fields beside the files, anything else as `output`."""
    body: dict[str, Any] = {}
    if task.output_json is not None:
        output = orjson.loads(task.output_json)
        if isinstance(output, dict):
            body.update(output)
        else:
            body["output"] = output
    task_input = task.input
    files = [
        _file(url, file, task_input) for url, file in zip(links.result_urls(task), task.files, strict=False)
    ]
    if files and all(file["content_type"].startswith("image/") for file in files):
        body["images"] = files
        seed = task_input.get("seed")
        if isinstance(seed, int) and not isinstance(seed, bool):
            body.setdefault("seed", seed)
    elif files and files[0]["content_type"].startswith("video/"):
        body["video"] = files[0]
        if len(files) > 1:
            body["files"] = files[1:]
    elif files:
        body["files"] = files
    return body


def _file(url: str, file: ResultFile, task_input: Mapping[str, Any]) -> dict[str, Any]:
    """fal's File (and Image) object; an image's size is the one its input asked for, if any."""
    entry: dict[str, Any] = {
        "url": url,
        "content_type": file.content_type,
        "file_name": file.name.rsplit("/", 1)[-1],
        "file_size": file.size,
    }
    if file.content_type.startswith("image/"):
        width, height = _size(task_input)
        entry["width"] = width
        entry["height"] = height
    return entry


def _size(task_input: Mapping[str, Any]) -> tuple[int | None, int | None]:
    width, height = task_input.get("width"), task_input.get("height")
    if isinstance(width, int) and isinstance(height, int):
        return width, height
    size = task_input.get("size")
    if isinstance(size, str):
        w, _, h = size.partition("x")
        if w.isdigit() and h.isdigit():
            return int(w), int(h)
    return None, None


class RequestFailed(TaskFailed):
    """The result of a failed request: XHuo's failed run (`error.code` the failCode, the message
    its failMsg), with fal's status for the code (`FAIL_STATUS`) and the request named."""

    def __init__(self, task: Task) -> None:
        super().__init__(task)
        self.status = FAIL_STATUS.get(self.code, 500)  # type: ignore[misc]
        self.headers = {"x-fal-request-id": task.id}
        self.extra = {"request_id": task.id}


def callback_body(task: Task, links: Links) -> bytes:
    """fal's webhook: `status` OK with the result as `payload`, or ERROR with `error` and the
    failure's detail as `payload`."""
    ok = task.state is TaskState.SUCCESS
    return orjson.dumps(
        {
            "request_id": task.id,
            "gateway_request_id": task.id,
            "status": "OK" if ok else "ERROR",
            "payload": result_body(task, links)
            if ok
            else {"detail": task.fail_msg, "error_type": task.fail_code},
            "error": None if ok else task.fail_msg or task.fail_code,
        }
    )


def error_envelope(error: GatewayError, trace_id: str) -> dict[str, Any]:
    """`detail` and `error_type`, which fal-client reads into its `FalClientHTTPError`, beside
    the gateway's `error` object and `trace_id`."""
    return {
        "detail": error.message,
        "error_type": error.code,
        "error": {"code": error.code, "message": error.message},
        "trace_id": trace_id,
        **error.extra,
    }
