"""The real app's hot lane (:mod:`gengate.api.hot_lane`) against its ASGI path, through a real
uvicorn in raw HTTP: the same request answered by the lane, then forced through ASGI (with a
`Content-Length: 0`, which the lane refuses), gets the same status, headers and body (apart
from the trace id and date); lane requests still get their access line and metrics."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from gengate.runtime import Gateway
from gengate.server.run import server_config
from gengate.settings import Settings
from observability.logcapture import configure_logs
from raw_http import connect, response, running

__all__ = ["configure_logs"]

ADMIN = "Authorization: Bearer gga_test_admin_key"
STATUS = "/api/v1/statusTask/demo-echo?taskId="


class Counted:
    """The app's lane, counting the requests it answered."""

    def __init__(self, lane: Any) -> None:
        self.lane, self.answered = lane, 0
        self.route_for = lane.route_for

    async def answer(self, route: Any, scope: Any) -> Any:
        self.answered += 1
        return await self.lane.answer(route, scope)


@pytest.fixture
def gateway_port(settings: Settings, configure_logs: Any) -> Iterator[tuple[int, Counted, Any]]:
    captured = configure_logs("info", "json")  # before the app is built, which binds the access log
    app = Gateway(settings).asgi()
    with running(server_config(app, settings)) as (port, server):
        config: Any = server.config
        counted = Counted(config.hot_lane)  # each connection takes it from the config
        config.hot_lane = counted
        yield port, counted, captured


def call(
    port: int, method: str, path: str, *headers: str, body: bytes = b""
) -> tuple[int, dict[str, str], Any]:
    lines = [f"{method} {path} HTTP/1.1", "Host: t", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    with connect(port) as sock:
        sock.sendall("\r\n".join([*lines, "", ""]).encode() + body)
        status, answer_headers, raw = response(sock)
    json = answer_headers.get("content-type") == "application/json"
    return status, answer_headers, orjson.loads(raw) if json else raw.decode()


def create_key(port: int, **fields: Any) -> tuple[str, str]:
    """The new key's id and its secret."""
    body = orjson.dumps({"name": "lane", **fields})
    status, _, created = call(
        port, "POST", "/admin/v1/keys", ADMIN, "Content-Type: application/json", body=body
    )
    assert status == 200, created
    return str(created["data"]["id"]), str(created["data"]["key"])


def finished_task(port: int, key: str) -> str:
    auth = f"Authorization: Bearer {key}"
    body = orjson.dumps({"input": {"prompt": "lane"}})
    _, _, submitted = call(port, "POST", "/api/v1/generateTask/demo-echo", auth, body=body)
    task_id = str(submitted["data"]["taskId"])
    for _ in range(200):
        if call(port, "GET", STATUS + task_id, auth)[2]["data"]["state"] == "success":
            return task_id
        threading.Event().wait(0.05)
    raise AssertionError("the task did not finish")


def same_answer(port: int, lane: Counted, path: str, *headers: str) -> tuple[int, dict[str, str], Any]:
    """The lane's answer, checked against the ASGI path's (taken with `Content-Length: 0`)."""
    before = lane.answered
    hot = call(port, "GET", path, *headers)
    assert lane.answered == before + 1, path
    asgi = call(port, "GET", path, *headers, "Content-Length: 0")
    assert lane.answered == before + 1, path
    for _status, answer_headers, body in (hot, asgi):
        if isinstance(body, dict) and "trace_id" in body:
            assert body.pop("trace_id") == answer_headers["x-trace-id"]
        trace_id = answer_headers.pop("x-trace-id")
        assert trace_id
        assert trace_id == next((h[12:] for h in headers if h.startswith("X-Trace-Id: ")), trace_id)
        assert answer_headers.pop("date")
        assert 1 <= int(answer_headers.pop("retry-after", "1")) <= 60
        assert int(answer_headers["content-length"]) > 0
    assert hot[0] == asgi[0]
    assert hot[1] == asgi[1]
    assert hot[2] == asgi[2]
    return hot


def test_the_lane_answers_as_the_asgi_path(gateway_port: tuple[int, Counted, Any]) -> None:
    port, lane, _captured = gateway_port
    _key_id, key = create_key(port)
    auth = f"Authorization: Bearer {key}"
    task_id = finished_task(port, key)
    assert same_answer(port, lane, STATUS + task_id, auth)[2]["data"]["state"] == "success"
    assert same_answer(port, lane, f"/api/v1/jobs/recordInfo?taskId={task_id}", auth)[2]["data"]["taskId"]
    assert same_answer(port, lane, f"/v1/predictions/{task_id}", auth)[2]["status"] == "succeeded"
    errors = [
        (404, STATUS + "task_missing", auth),
        (401, STATUS + task_id, "X-Other: 1"),
        (401, STATUS + task_id, "Authorization: Bearer gga_not_a_key"),
        (400, f"{STATUS}{task_id}&taskId={task_id}", auth),
        (404, "/v1/predictions/task_missing", auth),
    ]
    for status, path, header in errors:
        assert same_answer(port, lane, path, header)[0] == status, path
    relayed = "X-Trace-Id: 0b6f3c1e-relayed-trace"  # kept by both
    assert same_answer(port, lane, STATUS + "task_missing", auth, relayed)[0] == 404
    limited = f"Authorization: Bearer {create_key(port, rate_limit='1/minute')[1]}"
    call(port, "GET", STATUS + task_id, limited)
    refused = same_answer(port, lane, STATUS + task_id, limited)
    assert refused[0] == 429
    assert refused[1]["x-ratelimit-limit"] == "1"
    assert refused[1]["x-ratelimit-remaining"] == "0"


def test_lane_requests_are_logged_and_counted(gateway_port: tuple[int, Counted, Any]) -> None:
    port, lane, captured = gateway_port
    key_id, key = create_key(port)
    task_id = finished_task(port, key)
    record_info = f"/api/v1/jobs/recordInfo?taskId={task_id}"

    def counted() -> float:
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in call(port, "GET", "/metrics")[2].splitlines()
            if line.startswith("gengate_http_request_duration_seconds_count{")
            and 'route="/api/v1/jobs/recordInfo"' in line
        )

    before, answered, lines = counted(), lane.answered, len(captured.records())
    trace_ids = [
        call(port, "GET", record_info, f"Authorization: Bearer {key}")[1]["x-trace-id"] for _ in range(3)
    ]
    assert lane.answered == answered + 3
    assert counted() == before + 3
    access = [r for r in captured.records()[lines:] if r.get("logger") == "gengate.access"]
    mine = [r for r in access if r["route"] == "/api/v1/jobs/recordInfo"]
    assert [r["trace_id"] for r in mine] == trace_ids
    assert {(r["method"], r["status"], r["key_id"], r["task_id"]) for r in mine} == {
        ("GET", 200, key_id, task_id)
    }


def test_each_process_of_several_finds_the_lane_of_the_app_it_builds(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve --processes N` hands uvicorn a factory, called in each process by `load`."""
    monkeypatch.setenv("GENGATE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("GENGATE_ADMIN_KEY", "gga_test_admin_key")
    config: Any = server_config("gengate.runtime:asgi_from_environment", settings, factory=True)
    assert config.hot_lane is None
    config.load()
    assert config.hot_lane is not None
    assert config.hot_lane.route_for("GET", "/api/v1/statusTask/demo-echo") is not None
