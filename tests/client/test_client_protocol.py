"""Unit tests of the sans-IO layer: every seed body, error envelopes, resultJson, retry and poll policy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from gengate import wire
from gengate.client import APIError, ProtocolError, TaskFailedError, TaskStatus, TaskTimeoutError
from gengate.client import _protocol as proto
from gengate.client._policy import MAX_RETRY_AFTER, PollSchedule, retry_decision, retry_hook

CREATE = 1704067200000
SEED_PENDING = {"taskId": "task_abc123xyz789", "state": "pending", "createTime": CREATE}
SEED_PROCESSING = {"taskId": "task_abc123xyz789", "state": "processing", "createTime": CREATE}
SEED_SUCCESS = {
    "taskId": "task_abc123xyz789",
    "state": "success",
    "resultJson": '{"resultUrls":["https://cdn.apixo.ai/output/abc123.jpg"]}',
    "costTime": 12500,
    "createTime": CREATE,
    "completeTime": 1704067212500,
}
SEED_FAILED = {
    "taskId": "task_abc123xyz789",
    "state": "failed",
    "failCode": "CONTENT_VIOLATION",
    "failMsg": "Content violates usage policy",
    "createTime": CREATE,
    "completeTime": 1704067205000,
}


def envelope(data: dict[str, Any] | None, code: int = 200, message: str = "success") -> dict[str, Any]:
    return {"code": code, "message": message, "data": data}


def response(status: int, body: Any = None, *, text: str | None = None, **headers: str) -> httpx.Response:
    request = httpx.Request("GET", "http://gw/api/v1/statusTask/m")
    if text is not None:
        return httpx.Response(status, text=text, headers=headers, request=request)
    return httpx.Response(status, json=body, headers=headers, request=request)


# --- status bodies -------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [SEED_PENDING, SEED_PROCESSING])
def test_in_flight_seed_bodies(data: dict[str, Any]) -> None:
    status = wire.parse_status(wire.unwrap(response(200, envelope(data))))
    assert status == TaskStatus(task_id="task_abc123xyz789", state=data["state"], create_time=CREATE)
    assert not status.is_terminal
    assert status.raw == data


def test_success_seed_body() -> None:
    status = wire.parse_status(wire.unwrap(response(200, envelope(SEED_SUCCESS))))
    assert status.is_terminal
    assert status.succeeded
    assert status.result_urls == ["https://cdn.apixo.ai/output/abc123.jpg"]
    assert (status.cost_time, status.complete_time) == (12500, 1704067212500)
    assert status.fail_code is None
    assert status.fail_msg is None


def test_failed_seed_body() -> None:
    status = wire.parse_status(wire.unwrap(response(200, envelope(SEED_FAILED))))
    assert status.is_terminal
    assert not status.succeeded
    assert (status.fail_code, status.fail_msg) == ("CONTENT_VIOLATION", "Content violates usage policy")
    assert status.result_urls == []
    assert status.complete_time == 1704067205000


def test_seed_002_body_without_create_time_or_envelope_code() -> None:
    # Seed 002 shows `{"data": {...}}` alone; the client must not insist on fields it can live without.
    status = wire.parse_status(wire.unwrap(response(200, {"data": {"taskId": "t", "state": "processing"}})))
    assert status.create_time is None
    assert status.state == "processing"


def test_progress_and_extra_fields() -> None:
    data = {**SEED_PROCESSING, "progress": 42.7, "model": "flux-2"}
    status = wire.parse_status(data)
    assert status.progress == 42
    assert status.raw["model"] == "flux-2"
    assert wire.parse_status({**SEED_PROCESSING, "progress": 140}).progress == 100


def test_status_without_state_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        wire.parse_status({"taskId": "t"})
    with pytest.raises(ProtocolError):
        wire.parse_status({"state": "pending"})


def test_submit_answer() -> None:
    data = wire.unwrap(response(200, envelope({"taskId": "task_abc123xyz"})))
    assert wire.parse_task_id(data) == "task_abc123xyz"
    assert wire.parse_task_id(SEED_SUCCESS) == "task_abc123xyz789"  # a `sync` submit answers a status body


# --- resultJson ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "urls"),
    [
        ('{"resultUrls":["https://a/1.jpg","https://a/2.jpg"]}', ["https://a/1.jpg", "https://a/2.jpg"]),
        ('{"resultUrls":[]}', []),
        ("{}", []),
        (None, []),
        ("", []),
        ({"resultUrls": ["https://a/x.png"]}, ["https://a/x.png"]),  # already decoded, as some relays send
    ],
)
def test_result_json(raw: Any, urls: list[str]) -> None:
    assert wire.parse_result_urls(raw) == urls


@pytest.mark.parametrize("raw", ["not json", '{"resultUrls": "x"}', '{"resultUrls": [1]}', "[1]"])
def test_malformed_result_json(raw: str) -> None:
    with pytest.raises(ProtocolError):
        wire.parse_result_urls(raw)


# --- error envelopes -----------------------------------------------------------------------------


def test_error_envelope() -> None:
    body = {
        "code": 401,
        "message": "Unauthorized",
        "data": None,
        "error": {"code": "invalid_token", "message": "unknown API key"},
        "trace_id": "trace-1",
    }
    with pytest.raises(APIError) as info:
        wire.unwrap(response(401, body, **{"X-Trace-Id": "trace-1"}))
    err = info.value
    assert (err.status, err.code, err.message, err.trace_id) == (
        401,
        "invalid_token",
        "unknown API key",
        "trace-1",
    )
    assert str(err) == "invalid_token: unknown API key (trace_id trace-1)"
    assert not err.retryable


def test_error_trace_id_from_header_and_retry_after() -> None:
    body = {"code": 429, "message": "slow down", "data": None, "error": {"code": "too_many_requests"}}
    err = wire.error_from_response(response(429, body, **{"X-Trace-Id": "hdr", "Retry-After": "7"}))
    assert (err.code, err.message, err.trace_id, err.retry_after) == (
        "too_many_requests",
        "slow down",
        "hdr",
        7.0,
    )
    assert err.retryable


def test_error_with_non_json_body() -> None:
    err = wire.error_from_response(response(502, text="<html>Bad Gateway</html>"))
    assert (err.status, err.code, err.trace_id) == (502, "http_502", None)
    assert "Bad Gateway" in err.message
    assert wire.error_from_response(response(503, text="")).message == "Service Unavailable"


def test_kie_style_error_says_msg() -> None:
    err = wire.error_from_response(response(404, {"code": 404, "msg": "no such task", "data": None}))
    assert (err.code, err.message) == ("http_404", "no such task")


def test_error_code_inside_a_200() -> None:
    # Hosted services answer HTTP 200 and put the error in the body's `code`.
    with pytest.raises(APIError) as info:
        wire.unwrap(response(200, {"code": 403, "message": "credits used up", "data": None}))
    assert info.value.status == 403


def test_success_that_is_not_an_envelope() -> None:
    with pytest.raises(ProtocolError):
        wire.unwrap(response(200, text="hello"))
    with pytest.raises(ProtocolError):
        wire.unwrap(response(200, {"code": 200, "message": "success", "data": None}))


# --- requests ------------------------------------------------------------------------------------


def test_submit_call() -> None:
    call = proto.submit_call("k", "flux-2", {"prompt": "p"})
    assert (call.method, call.url) == ("POST", "/api/v1/generateTask/flux-2")
    assert call.json == {"request_type": "async", "input": {"prompt": "p"}}
    assert call.headers == {"Authorization": "Bearer k"}
    assert not call.idempotent
    keyed = proto.submit_call("k", "m", {}, request_type="sync", idempotency_key="abc")
    assert keyed.headers["Idempotency-Key"] == "abc"
    assert keyed.idempotent
    assert keyed.json == {"request_type": "sync", "input": {}}


def test_submit_call_rejects_unknown_request_type() -> None:
    with pytest.raises(ValueError, match="request_type"):
        proto.submit_call("k", "m", {}, request_type="callback")  # type: ignore[arg-type]


def test_status_call_quotes_the_model() -> None:
    call = proto.status_call("k", "a/../b", "task_1")
    assert call.url == "/api/v1/statusTask/a%2F..%2Fb"
    assert call.params == {"taskId": "task_1"}
    assert call.idempotent


def test_download_call_sends_the_key_only_to_the_gateway() -> None:
    own = proto.download_call("k", "http://gw:8000", "http://gw:8000/files/x.png")
    relative = proto.download_call("k", "http://gw:8000/base/", "/files/x.png")
    cdn = proto.download_call("k", "http://gw:8000", "https://cdn.example/x.png")
    assert own.headers == relative.headers == {"Authorization": "Bearer k"}
    assert relative.url == "http://gw:8000/files/x.png"
    assert cdn.headers == {}


def test_download_destination(tmp_path: Path) -> None:
    assert proto.download_destination("http://a/b/c.png", tmp_path / "f.png") == tmp_path / "f.png"
    assert proto.download_destination("http://a/b/c%20d.png?sig=1", tmp_path) == tmp_path / "c_d.png"
    assert proto.download_destination("http://a/", tmp_path) == tmp_path / "download"
    assert proto.partial_path(tmp_path / "f.png") == tmp_path / "f.png.part"


# --- retry and poll policy -----------------------------------------------------------------------


def api_error(status: int, retry_after: float | None = None) -> APIError:
    return APIError(status, "x", "m", retry_after=retry_after)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_retryable_statuses(status: int) -> None:
    assert retry_decision(api_error(status), idempotent=True) is True
    assert retry_decision(api_error(status), idempotent=False) is False


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413])
def test_other_4xx_never_retried(status: int) -> None:
    assert retry_decision(api_error(status), idempotent=True) is False


def test_retry_after_is_honoured_and_capped() -> None:
    assert retry_decision(api_error(429, 2.0), idempotent=True) == 2.0
    assert retry_decision(api_error(503, 0.0), idempotent=True) == 0.0
    assert retry_decision(api_error(503, 3600.0), idempotent=True) == MAX_RETRY_AFTER


def test_transport_errors_and_others() -> None:
    assert retry_decision(httpx.ConnectError("refused"), idempotent=True) is True
    assert retry_decision(httpx.ReadTimeout("slow"), idempotent=False) is False
    assert retry_decision(ValueError("bug"), idempotent=True) is False


def test_retry_hook_follows_the_call() -> None:
    assert retry_hook(proto.status_call("k", "m", "t"))(api_error(500)) is True
    assert retry_hook(proto.submit_call("k", "m", {}))(api_error(500)) is False
    assert retry_hook(proto.submit_call("k", "m", {}, idempotency_key="i"))(api_error(500)) is True


def test_poll_schedule_backs_off_to_the_cap() -> None:
    schedule = PollSchedule(timeout=100.0, start=0.0)
    delays = [schedule.next_delay(0.0) for _ in range(8)]
    assert delays == [0.25, 0.375, 0.5625, 0.84375, 1.265625, 1.8984375, 2.84765625, 3.0]


def test_poll_schedule_stops_at_the_deadline() -> None:
    schedule = PollSchedule(timeout=1.0, start=10.0)
    assert schedule.next_delay(10.0) == 0.25
    assert schedule.next_delay(10.9) == pytest.approx(0.1)  # never sleeps past the deadline
    assert schedule.next_delay(11.0) is None


def test_error_messages() -> None:
    failed = wire.parse_status(SEED_FAILED)
    assert str(TaskFailedError(failed)) == (
        "task task_abc123xyz789 failed: CONTENT_VIOLATION: Content violates usage policy"
    )
    timeout = TaskTimeoutError("task_1", 5.0, wire.parse_status(SEED_PROCESSING))
    assert isinstance(timeout, TimeoutError)
    assert str(timeout) == "task task_1 not finished after 5 s, last state processing"


def test_status_is_frozen() -> None:
    status = wire.parse_status(SEED_SUCCESS)
    with pytest.raises(AttributeError):
        status.state = "failed"  # type: ignore[misc]
    assert json.loads(SEED_SUCCESS["resultJson"])["resultUrls"] == status.result_urls  # type: ignore[arg-type]
