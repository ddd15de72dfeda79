"""Sync and async clients against `httpx.MockTransport` playing a small gengate server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import stamina

from gengate.client import (
    APIError,
    AsyncClient,
    Client,
    TaskFailedError,
    TaskStatus,
    TaskTimeoutError,
    _async,
    _sync,
)

BASE = "http://gw.test"
KEY = "sk_test"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 800  # ~200 KiB: several chunks when streamed


class FakeServer:
    """The APIXO dialect in miniature: each poll moves a task one step along its script."""

    def __init__(self, script: list[dict[str, Any]] | None = None) -> None:
        self.script = script or [
            {"state": "pending"},
            {"state": "processing", "progress": 30},
            {"state": "processing", "progress": 80},
            {"state": "success"},
        ]
        self.polls: dict[str, int] = {}
        self.requests: list[httpx.Request] = []
        self.faults: list[httpx.Response] = []  # answered first, one per request

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.faults:
            return self.faults.pop(0)
        path = request.url.path
        if path.startswith("/files/"):
            return httpx.Response(200, content=PNG, headers={"Content-Type": "image/png"})
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return error(401, "invalid_token", "unknown API key")
        if path.startswith("/api/v1/generateTask/"):
            return self.submit(request)
        if path.startswith("/api/v1/statusTask/"):
            return self.status(request.url.params["taskId"])
        return error(404, "no_api", "no such route")

    def submit(self, request: httpx.Request) -> httpx.Response:
        assert json.loads(request.content)["request_type"] == "async"
        task_id = f"task_{len(self.polls):022d}"
        self.polls[task_id] = 0
        return ok({"taskId": task_id})

    def status(self, task_id: str) -> httpx.Response:
        if task_id not in self.polls:
            return error(404, "task_not_found", "no such task")
        step = self.script[min(self.polls[task_id], len(self.script) - 1)]
        self.polls[task_id] += 1
        return ok(self.status_body(task_id, step))

    def status_body(self, task_id: str, step: dict[str, Any]) -> dict[str, Any]:
        data = {"taskId": task_id, "createTime": 1704067200000, **step}
        if step["state"] == "success":
            urls = [f"{BASE}/files/{task_id}/0.png"]
            data |= {
                "resultJson": json.dumps({"resultUrls": urls}),
                "costTime": 1200,
                "completeTime": 1704067201200,
            }
        if step["state"] == "failed":
            data |= {"failCode": "CONTENT_VIOLATION", "failMsg": "nope", "completeTime": 1704067201000}
        return data

    def count(self, method: str, prefix: str) -> int:
        return sum(1 for r in self.requests if r.method == method and r.url.path.startswith(prefix))


def ok(data: dict[str, Any]) -> httpx.Response:
    return httpx.Response(
        200, json={"code": 200, "message": "success", "data": data}, headers={"X-Trace-Id": "t-ok"}
    )


def error(status: int, code: str, message: str, **headers: str) -> httpx.Response:
    body = {"code": status, "message": message, "data": None, "error": {"code": code, "message": message}}
    return httpx.Response(
        status, json={**body, "trace_id": "t-err"}, headers={"X-Trace-Id": "t-err", **headers}
    )


@pytest.fixture(autouse=True)
def no_retry_waits() -> Iterator[None]:
    """Retries happen, but without their backoff sleeps."""
    with stamina.set_testing(True, attempts=4):
        yield


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Poll delays of both clients, recorded instead of slept."""
    recorded: list[float] = []

    async def fake_async_sleep(delay: float) -> None:
        recorded.append(delay)

    monkeypatch.setattr(_sync, "sleep", recorded.append)
    monkeypatch.setattr(_async, "sleep", fake_async_sleep)
    return recorded


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def client(server: FakeServer) -> Iterator[Client]:
    with Client(BASE, KEY, transport=httpx.MockTransport(server)) as c:
        yield c


# --- sync ----------------------------------------------------------------------------------------


def test_generate_polls_with_backoff_and_reports_every_poll(
    client: Client, server: FakeServer, sleeps: list[float]
) -> None:
    updates: list[TaskStatus] = []
    status = client.generate("demo", {"prompt": "cat"}, on_update=updates.append)
    assert status.succeeded
    assert [(u.state, u.progress) for u in updates] == [
        ("pending", None),
        ("processing", 30),
        ("processing", 80),
        ("success", None),
    ]
    assert sleeps == [0.25, 0.375, 0.5625]
    assert status.result_urls == [f"{BASE}/files/{status.task_id}/0.png"]
    submit = server.requests[0]
    assert json.loads(submit.content) == {"request_type": "async", "input": {"prompt": "cat"}}
    assert "Idempotency-Key" not in submit.headers


def test_submit_sends_idempotency_key(client: Client, server: FakeServer) -> None:
    client.submit("demo", {"prompt": "cat"}, idempotency_key="once")
    assert server.requests[0].headers["Idempotency-Key"] == "once"


def test_wait_returns_a_failed_task_and_generate_raises(server: FakeServer, sleeps: list[float]) -> None:
    server.script = [{"state": "processing"}, {"state": "failed"}]
    with Client(BASE, KEY, transport=httpx.MockTransport(server)) as c:
        task_id = c.submit("demo", {"prompt": "x"})
        assert c.wait("demo", task_id).fail_code == "CONTENT_VIOLATION"
        with pytest.raises(TaskFailedError) as info:
            c.generate("demo", {"prompt": "x"})
    assert info.value.status.fail_msg == "nope"


def test_wait_times_out(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server.script = [{"state": "processing", "progress": 10}]
    clock = [0.0]
    monkeypatch.setattr(_sync, "monotonic", lambda: clock[0])

    def advance(delay: float) -> None:
        clock[0] += delay

    monkeypatch.setattr(_sync, "sleep", advance)
    with Client(BASE, KEY, transport=httpx.MockTransport(server)) as c:
        task_id = c.submit("demo", {"prompt": "x"})
        with pytest.raises(TaskTimeoutError) as info:
            c.wait("demo", task_id, timeout=2.0)
    assert info.value.last is not None
    assert info.value.last.progress == 10
    assert clock[0] == pytest.approx(2.0)


def test_api_error_fields(server: FakeServer) -> None:
    with Client(BASE, "wrong", transport=httpx.MockTransport(server)) as c, pytest.raises(APIError) as info:
        c.status("demo", "task_x")
    err = info.value
    assert (err.status, err.code, err.message, err.trace_id) == (
        401,
        "invalid_token",
        "unknown API key",
        "t-err",
    )


def test_unknown_task_is_not_retried(client: Client, server: FakeServer) -> None:
    with pytest.raises(APIError) as info:
        client.status("demo", "task_missing")
    assert info.value.code == "task_not_found"
    assert len(server.requests) == 1


def test_status_retries_429_and_5xx(client: Client, server: FakeServer) -> None:
    task_id = client.submit("demo", {"prompt": "x"})
    server.faults = [
        error(429, "too_many_requests", "slow down", **{"Retry-After": "1"}),
        httpx.Response(502, text="bad gateway"),
    ]
    assert client.status("demo", task_id).state == "pending"
    assert server.count("GET", "/api/v1/statusTask/") == 3


def test_status_gives_up_after_a_few_attempts(client: Client, server: FakeServer) -> None:
    server.faults = [error(503, "unavailable", "queue full")] * 10
    with pytest.raises(APIError) as info:
        client.status("demo", "task_x")
    assert info.value.code == "unavailable"
    assert len(server.requests) == 4


def test_submit_is_not_retried_without_idempotency_key(client: Client, server: FakeServer) -> None:
    server.faults = [error(503, "unavailable", "queue full")]
    with pytest.raises(APIError):
        client.submit("demo", {"prompt": "x"})
    assert len(server.requests) == 1


def test_submit_is_retried_with_idempotency_key(client: Client, server: FakeServer) -> None:
    server.faults = [error(503, "unavailable", "queue full")]
    assert client.submit("demo", {"prompt": "x"}, idempotency_key="k1").startswith("task_")
    assert server.count("POST", "/api/v1/generateTask/") == 2


def test_download_streams_to_a_file(client: Client, server: FakeServer, tmp_path: Path) -> None:
    path = client.download(f"{BASE}/files/task_1/0.png", tmp_path / "out" / "a.png")
    assert path == tmp_path / "out" / "a.png"
    assert path.read_bytes() == PNG
    assert not (tmp_path / "out" / "a.png.part").exists()
    into_folder = client.download(f"{BASE}/files/task_1/0.png", tmp_path)
    assert into_folder == tmp_path / "0.png"


def test_download_error_leaves_no_file(client: Client, server: FakeServer, tmp_path: Path) -> None:
    server.faults = [error(404, "not_found", "expired")]
    with pytest.raises(APIError):
        client.download(f"{BASE}/files/task_1/0.png", tmp_path / "a.png")
    assert list(tmp_path.iterdir()) == []


def test_download_keeps_the_key_from_other_hosts(client: Client, server: FakeServer, tmp_path: Path) -> None:
    client.download("https://cdn.example/files/x.png", tmp_path / "x.png")
    assert "Authorization" not in server.requests[-1].headers


def test_empty_key_is_refused() -> None:
    with pytest.raises(ValueError, match="api_key"):
        Client(BASE, "")


# --- async ---------------------------------------------------------------------------------------


async def test_async_generate_and_download(server: FakeServer, sleeps: list[float], tmp_path: Path) -> None:
    updates: list[TaskStatus] = []
    async with AsyncClient(BASE, KEY, transport=httpx.MockTransport(server)) as c:
        status = await c.generate("demo", {"prompt": "cat"}, on_update=updates.append)
        path = await c.download(status.result_urls[0], tmp_path / "r.png")
    assert [u.progress for u in updates] == [None, 30, 80, None]
    assert sleeps == [0.25, 0.375, 0.5625]
    assert path.read_bytes() == PNG


async def test_async_failed_task_and_errors(server: FakeServer, sleeps: list[float]) -> None:
    server.script = [{"state": "failed"}]
    async with AsyncClient(BASE, KEY, transport=httpx.MockTransport(server)) as c:
        with pytest.raises(TaskFailedError):
            await c.generate("demo", {"prompt": "x"})
        server.faults = [httpx.Response(500, text="oops")]
        task_id = next(iter(server.polls))
        assert (await c.status("demo", task_id)).state == "failed"  # retried past the 500
    async with AsyncClient(BASE, "bad", transport=httpx.MockTransport(server)) as c:
        with pytest.raises(APIError) as info:
            await c.submit("demo", {"prompt": "x"})
    assert info.value.code == "invalid_token"
    assert sleeps == []


async def test_async_wait_times_out(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server.script = [{"state": "pending"}]
    clock = [0.0]

    async def advance(delay: float) -> None:
        clock[0] += delay

    monkeypatch.setattr(_async, "monotonic", lambda: clock[0])
    monkeypatch.setattr(_async, "sleep", advance)
    async with AsyncClient(BASE, KEY, transport=httpx.MockTransport(server)) as c:
        task_id = await c.submit("demo", {"prompt": "x"})
        with pytest.raises(TaskTimeoutError):
            await c.wait("demo", task_id, timeout=1.0)
