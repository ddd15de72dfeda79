"""Sans-IO core of the client: builds requests and parses responses, never sends anything.

`Client` and `AsyncClient` only move bytes; every decision about the APIXO wire format lives
here, so both stay thin and cannot drift apart (the same split httpx makes between its clients
and transports).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path, PurePosixPath
from typing import Any, Final, Literal
from urllib.parse import quote, unquote

import httpx

from ._errors import APIError, ProtocolError
from ._models import TaskStatus

RequestType = Literal["async", "sync"]

API_PREFIX: Final = "/api/v1"
_REQUEST_TYPES: Final = frozenset({"async", "sync"})
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP request to make, plus whether repeating it is harmless (which decides retries)."""

    method: str
    url: str
    params: dict[str, str] | None = None
    json: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    idempotent: bool = True


def _auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


def _model_path(route: str, model: str) -> str:
    # Quote the model so an odd id can never escape its path segment.
    return f"{API_PREFIX}/{route}/{quote(model, safe='')}"


def submit_call(
    api_key: str,
    model: str,
    input: dict[str, Any],
    *,
    request_type: RequestType = "async",
    idempotency_key: str | None = None,
    callback_url: str | None = None,
) -> Call:
    """`POST generateTask`: only repeatable when an idempotency key makes a duplicate harmless.

    A `callback_url` makes it a `callback` task: gengate POSTs the final status there, signed.
    """
    if request_type not in _REQUEST_TYPES:
        raise ValueError(f"request_type must be 'async' or 'sync', not {request_type!r}")
    body: dict[str, Any] = {"request_type": request_type}
    if callback_url is not None:
        if request_type == "sync":
            raise ValueError("a sync submit waits for the result itself: it takes no callback_url")
        body = {"request_type": "callback", "callback_url": callback_url}
    headers = _auth(api_key)
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return Call(
        "POST",
        _model_path("generateTask", model),
        json={**body, "input": input},
        headers=headers,
        idempotent=idempotency_key is not None,
    )


def status_call(api_key: str, model: str, task_id: str) -> Call:
    """`GET statusTask`: a point read, always safe to repeat."""
    return Call("GET", _model_path("statusTask", model), params={"taskId": task_id}, headers=_auth(api_key))


def account_call(api_key: str) -> Call:
    """`GET /api/v1/account`: the key's own view, with its webhook secret."""
    return Call("GET", f"{API_PREFIX}/account", headers=_auth(api_key))


def download_call(api_key: str, base_url: str, url: str) -> Call:
    """`GET` a result URL; the key goes only to the gateway itself, never to a third-party CDN."""
    base = httpx.URL(base_url)
    target = base.join(url)
    same_origin = (target.scheme, target.host, target.port) == (base.scheme, base.host, base.port)
    return Call("GET", str(target), headers=_auth(api_key) if same_origin else {})


def download_destination(url: str, dest: Path) -> Path:
    """Where `download` writes: `dest` itself, or a file named after the URL inside a folder `dest`."""
    if not dest.is_dir():
        return dest
    name = _SAFE_NAME.sub("_", unquote(PurePosixPath(httpx.URL(url).path).name)).lstrip(".")
    return dest / (name or "download")


#: The most of a download's error answer read, for its message (a CDN's error page is anyone's).
ERROR_BODY_MAX: Final = 64 << 10


def partial_path(target: Path) -> Path:
    """A sibling to stream into, renamed at the end so a cut download never looks complete."""
    return target.with_name(target.name + ".part")


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _retry_after(response: httpx.Response) -> float | None:
    return parse_retry_after(response.headers.get("Retry-After"))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header, in either of its forms (seconds or HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    if now is None:
        import time  # noqa: PLC0415 - only HTTP-date hints need the clock

        now = time.time()
    return max(0.0, when - now)


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
