"""One access line per HTTP request, and the observers' hooks, over the real app in process.

The framework routes and the hot path in front of them (status polls) alike: the route's
template (never the raw path), the status, the key id, the trace id of the response and the
task id when the request is about one.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from logcapture import configure_logs
from starlette.types import Scope

from gengate.api.app import build_app
from gengate.api.context import ApiContext
from gengate.observability.requests import UNMATCHED, RequestLog, RequestObserver, RequestRecord
from gengate.runtime import Gateway

__all__ = ["configure_logs"]

SUBMIT = {"request_type": "async", "input": {"mode": "echo", "prompt": "hi"}}


class Recorder(RequestObserver):
    def __init__(self) -> None:
        self.started: list[str] = []
        self.records: list[RequestRecord] = []

    def on_request_start(self, scope: Scope) -> None:
        self.started.append(scope["path"])

    def on_request(self, record: RequestRecord) -> None:
        self.records.append(record)


def _app(gateway: Gateway, **changes: Any) -> Any:
    ctx = gateway.api_context()
    return build_app(ApiContext(**{**{f: getattr(ctx, f) for f in ctx.__dataclass_fields__}, **changes}))


async def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test")


@pytest.fixture
async def keyed(gateway: Gateway) -> tuple[str, str]:
    key, secret = await gateway.keys.create("logged")
    return key.id, secret


def _access(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("logger") == "gengate.access"]


async def test_one_line_per_request_with_template_key_trace_and_task(
    configure_logs: Any, gateway: Gateway, keyed: tuple[str, str]
) -> None:
    captured = configure_logs("info", "json")
    key_id, secret = keyed
    auth = {"Authorization": f"Bearer {secret}"}
    async with await _client(gateway.asgi()) as http:
        submitted = await http.post("/api/v1/generateTask/demo-echo", json=SUBMIT, headers=auth)
        task_id = submitted.json()["data"]["taskId"]
        polled = await http.get(f"/api/v1/statusTask/demo-echo?taskId={task_id}", headers=auth)  # hot path
        missing = await http.get("/no/such/path/task_secretish?x=1")
        account = await http.get("/api/v1/account", headers=auth)
    lines = _access(captured.records())
    assert [(r["method"], r["route"], r["status"]) for r in lines] == [
        ("POST", "/api/v1/generateTask/{model}", 200),
        ("GET", "/api/v1/statusTask/{model}", 200),
        ("GET", UNMATCHED, 404),
        ("GET", "/api/v1/account", 200),
    ]
    responses = (submitted, polled, missing, account)
    assert [r["trace_id"] for r in lines] == [resp.headers["x-trace-id"] for resp in responses]
    assert [r["key_id"] for r in lines] == [key_id, key_id, None, key_id]
    assert [r["task_id"] for r in lines] == [task_id, task_id, None, None]
    assert all(isinstance(r["duration_ms"], float) and r["duration_ms"] >= 0 for r in lines)
    assert "secretish" not in str(lines)  # the raw path is nowhere in the access lines


async def test_lines_logged_while_answering_carry_the_request_ids(
    configure_logs: Any, gateway: Gateway, keyed: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    captured = configure_logs("info", "json")
    _key_id, secret = keyed

    async def broken(_task_id: str) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(gateway.store, "get_task", broken)
    app = gateway.asgi()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://gateway.test"
    ) as http:
        answer = await http.get(
            "/api/v1/statusTask/demo-echo?taskId=task_x", headers={"Authorization": f"Bearer {secret}"}
        )
    assert answer.status_code == 500
    error = next(r for r in captured.records() if r["level"] == "error")
    assert error["trace_id"] == answer.headers["x-trace-id"]
    assert "boom" in error["exception"]


async def test_a_plausible_trace_id_sent_is_kept_an_odd_one_is_not(
    configure_logs: Any, gateway: Gateway
) -> None:
    captured = configure_logs("info", "json")
    async with await _client(gateway.asgi()) as http:
        kept = await http.get("/healthz", headers={"X-Trace-Id": "0b6f3c1e-relayed-trace"})
        odd = await http.get("/healthz", headers={"X-Trace-Id": "has spaces\tand tabs"})
        short = await http.get("/healthz", headers={"X-Trace-Id": "abc"})
    assert kept.headers["x-trace-id"] == "0b6f3c1e-relayed-trace"
    assert odd.headers["x-trace-id"] not in ("has spaces\tand tabs", "")
    assert short.headers["x-trace-id"] != "abc"
    assert next(r["trace_id"] for r in _access(captured.records())) == "0b6f3c1e-relayed-trace"


async def test_with_the_access_log_off_observers_still_see_every_request(
    configure_logs: Any, gateway: Gateway, keyed: tuple[str, str]
) -> None:
    captured = configure_logs("info", "json")
    recorder = Recorder()
    app = _app(gateway, access_log=False, request_observers=(recorder,))
    _key_id, secret = keyed
    async with await _client(app) as http:
        await http.get(
            "/api/v1/statusTask/demo-echo?taskId=task_x", headers={"Authorization": f"Bearer {secret}"}
        )
        await http.get("/api/v1/account", headers={"Authorization": "Bearer gg_wrong"})
        await http.request("BREW", "/healthz")
    assert _access(captured.records()) == []
    assert recorder.started == ["/api/v1/statusTask/demo-echo", "/api/v1/account", "/healthz"]
    assert [(r.method, r.route, r.status) for r in recorder.records] == [
        ("GET", "/api/v1/statusTask/{model}", 404),
        ("GET", "/api/v1/account", 401),
        ("OTHER", "/healthz", 405),
    ]
    assert all(r.trace_id and r.duration_s >= 0 for r in recorder.records)


async def test_a_client_gone_mid_body_is_the_apps_one_line_not_two(
    configure_logs: Any, gateway: Gateway
) -> None:
    captured = configure_logs("info", "json")
    recorder = Recorder()
    app = _app(gateway, request_observers=(recorder,))
    _key, secret = await gateway.keys.create("leaver")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/generateTask/demo-echo",
        "raw_path": b"/api/v1/generateTask/demo-echo",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"authorization", f"Bearer {secret}".encode()), (b"content-length", b"1000")],
        "client": ("127.0.0.1", 1),
        "server": ("gateway.test", 80),
    }
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": b'{"input":{', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        never: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        return await never

    async def send(_message: dict[str, Any]) -> None:
        pass

    await app(scope, receive, send)
    records = captured.records()
    assert _access(records) == []
    assert [r["event"] for r in records if "disconnected" in r["event"]] != []
    assert [r.route for r in recorder.records] == ["/api/v1/generateTask/{model}"]


def test_the_hot_path_names_its_routes_templates(gateway: Gateway) -> None:
    app = gateway.asgi()
    assert isinstance(app, RequestLog)
    templates = [route.path for route in app.app.routes]  # type: ignore[attr-defined]
    assert {"/api/v1/statusTask/{model}", "/api/v1/jobs/recordInfo"} <= set(templates)
    assert all("{" not in t or t.endswith("}") for t in templates)


@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_no_access_line_above_info(configure_logs: Any, gateway: Gateway, fmt: str) -> None:
    """`GENGATE_LOG_LEVEL=warning` keeps access lines out, as it keeps out every `info` line;
    the observers still see every request."""
    captured = configure_logs("warning", fmt)
    recorder = Recorder()
    async with await _client(_app(gateway, request_observers=(recorder,))) as http:
        await http.get("/healthz")
        await http.get("/no/such/path")
    assert "gengate.access" not in captured.text()
    assert [r.status for r in recorder.records] == [200, 404]
