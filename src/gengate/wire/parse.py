"""Reading what an APIXO-style server answers: envelopes, status bodies, error bodies, `Retry-After`.

Sans-IO: every function takes a response (or its parsed JSON) and returns plain data or raises
:class:`~gengate.wire.errors.APIError` / :class:`~gengate.wire.errors.ProtocolError`. The SDK, the
relays (which read hosted services the SDK also speaks to) and the callback sender share it, so an
upstream is read the way a client reads gengate.
"""

from __future__ import annotations

import json
import time
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from gengate.wire.errors import APIError, ProtocolError
from gengate.wire.status import TaskStatus


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _retry_after(response: httpx.Response) -> float | None:
    return parse_retry_after(response.headers.get("Retry-After"))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header, in either of its forms (delta-seconds or an HTTP
    date, read as UTC when it names no zone); None for anything else, never an exception."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # isdigit alone admits "²", which float() refuses
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if now is None:
        now = time.time()
    return max(0.0, when.timestamp() - now)


def error_from_response(response: httpx.Response, body: Any = None) -> APIError:
    """The `APIError` an error response stands for; tolerates bodies that are not envelopes.

    The response must have been read (streamed responses: `read()` first).
    """
    if body is None:
        body = _body(response)
    envelope = body if isinstance(body, dict) else {}
    error_obj = envelope.get("error")
    error: dict[str, Any] = error_obj if isinstance(error_obj, dict) else {}
    status = response.status_code
    if status < 400 and isinstance(envelope.get("code"), int):
        status = envelope["code"]  # hosted services may say 200 on the wire and the error in the body
    code = error.get("code")
    message = error.get("message") or envelope.get("message") or envelope.get("msg")
    if not isinstance(message, str) or not message:
        message = response.text.strip()[:200] or response.reason_phrase or "error"
    trace_id = envelope.get("trace_id") or response.headers.get("X-Trace-Id")
    return APIError(
        status,
        code if isinstance(code, str) and code else f"http_{status}",
        message,
        trace_id if isinstance(trace_id, str) else None,
        retry_after=_retry_after(response),
    )


def unwrap(response: httpx.Response) -> dict[str, Any]:
    """The `data` object of a success envelope; raises `APIError` for anything else the server says."""
    if not response.is_success:
        raise error_from_response(response)
    body = _body(response)
    if not isinstance(body, dict):
        raise ProtocolError(f"expected a JSON envelope, got {response.text[:100]!r}")
    code = body.get("code", 200)
    if isinstance(code, int) and not 200 <= code < 300:
        raise error_from_response(response, body)
    data = body.get("data")
    if not isinstance(data, dict):
        raise ProtocolError("envelope without a `data` object")
    return data


def parse_task_id(data: dict[str, Any]) -> str:
    """The `taskId` of a submit answer (async) or of a status body (sync)."""
    task_id = data.get("taskId")
    if not isinstance(task_id, str) or not task_id:
        raise ProtocolError("answer without a `taskId`")
    return task_id


def parse_result_urls(result_json: Any) -> list[str]:
    """`resultUrls` out of `resultJson`, which the wire format sends as a JSON *string*."""
    if result_json is None or result_json == "":
        return []
    if isinstance(result_json, str):
        try:
            result_json = json.loads(result_json)
        except ValueError as exc:
            raise ProtocolError(f"resultJson is not JSON: {result_json[:100]!r}") from exc
    urls = result_json.get("resultUrls", []) if isinstance(result_json, dict) else None
    if not isinstance(urls, list) or not all(isinstance(url, str) for url in urls):
        raise ProtocolError("resultJson.resultUrls is not a list of strings")
    return list(urls)


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def parse_status(data: dict[str, Any]) -> TaskStatus:
    """A `TaskStatus` from the `data` of a status body, with only the fields its state carries."""
    task_id = parse_task_id(data)
    state = data.get("state")
    if not isinstance(state, str):
        raise ProtocolError(f"task {task_id}: status without a `state`")
    progress = _int(data.get("progress"))
    return TaskStatus(
        task_id=task_id,
        state=state,
        create_time=_int(data.get("createTime")),
        progress=None if progress is None else min(100, max(0, progress)),
        result_urls=parse_result_urls(data.get("resultJson")),
        cost_time=_int(data.get("costTime")),
        complete_time=_int(data.get("completeTime")),
        fail_code=_str(data.get("failCode")),
        fail_msg=_str(data.get("failMsg")),
        raw=data,
    )
