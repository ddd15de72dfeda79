"""Callbacks from real `gengate serve` processes to real receivers on loopback.

Each receiver is a `ThreadingHTTPServer` on 127.0.0.1 in a thread of the test process, answering
scripted replies and recording every request and every connection. The servers admit it with
`GENGATE_WEBHOOK_ALLOW=127.0.0.0/8` (except where a test shows what happens without it).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from standardwebhooks import Webhook

pytestmark = pytest.mark.e2e

ALLOW = {"GENGATE_WEBHOOK_ALLOW": "127.0.0.0/8"}
ECHO: dict[str, Any] = {"mode": "echo", "prompt": "e2e callback"}
POLL_S = 0.05


# -- a real receiver in a thread ----------------------------------------------------------------
@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b"ok"


@dataclass(frozen=True)
class Arrival:
    at_ns: int
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)

    def verify(self, secret: str) -> Any:
        return Webhook(secret).verify(self.body, self.headers)


class _Server(ThreadingHTTPServer):
    receiver: ThreadReceiver

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.receiver.lock:
            self.receiver.connections += 1
        super().process_request(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_POST(self) -> None:
        arrived = time.time_ns()
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = self.server.receiver.record(Arrival(arrived, self.path, headers, body))
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class ThreadReceiver:
    """Answers `replies` in order, then `default`; records requests and counts connections."""

    replies: list[Reply] = field(default_factory=list)
    default: Reply = field(default_factory=Reply)
    arrivals: list[Arrival] = field(default_factory=list)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0
    _server: _Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self, port: int = 0) -> ThreadReceiver:
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.receiver = self
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def record(self, arrival: Arrival) -> Reply:
        with self.lock:
            self.arrivals.append(arrival)
            return self.replies.pop(0) if self.replies else self.default

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Arrival]:
        deadline = time.monotonic() + timeout
        while len(self.arrivals) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"{len(self.arrivals)} callbacks arrived, not {count}, within {timeout} s")
            time.sleep(POLL_S / 5)
        return list(self.arrivals[:count])


@pytest.fixture
def receivers() -> Iterator[Callable[..., ThreadReceiver]]:
    started: list[ThreadReceiver] = []

    def start(*replies: Reply, default: Reply | None = None, port: int = 0) -> ThreadReceiver:
        receiver = ThreadReceiver(list(replies), default or Reply())
        started.append(receiver)
        return receiver.start(port)

    yield start
    for receiver in started:
        receiver.close()


def reserve_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- talking to a server about callbacks ------------------------------------------------------
def deliveries(server: Any, key: str, task_id: str) -> list[dict[str, Any]]:
    response = server.http.get(f"/api/v1/tasks/{task_id}/deliveries", headers=server.auth(key))
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["data"]["deliveries"]
    return found


def wait_delivery(
    server: Any, key: str, task_id: str, until: Callable[[dict[str, Any]], bool], timeout: float = 10.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = deliveries(server, key, task_id)
        assert len(found) <= 1, found
        if found and until(found[0]):
            return found[0]
        if time.monotonic() > deadline:
            pytest.fail(f"delivery of {task_id} still not as expected after {timeout} s: {found}")
        time.sleep(POLL_S)


def webhook_secret(server: Any, key: str) -> str:
    response = server.http.get("/api/v1/account", headers=server.auth(key))
    assert response.status_code == 200, response.text
    secret: str = response.json()["data"]["webhook_secret"]
    return secret


def status_body(server: Any, key: str, task_id: str) -> dict[str, Any]:
    response = server.status(key, "demo-echo", task_id)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# -- the tests ----------------------------------------------------------------------------------
def test_signed_callbacks_carry_the_status_response(
    start_gengate: Any, receivers: Callable[..., ThreadReceiver]
) -> None:
    server = start_gengate("callbacks", env={**ALLOW, "GENGATE_WEBHOOK_RETRY_SCHEDULE": "0,0.2,0.2"})
    receiver = receivers()
    key = server.create_key("callbacks")["key"]
    secret = webhook_secret(server, key)
    ok = server.submit_ok(key, "demo-echo", ECHO, request_type="callback", callback_url=receiver.url)
    failing = server.submit_ok(
        key,
        "demo-echo",
        {**ECHO, "fail_code": "DEMO_FAIL"},
        request_type="callback",
        callback_url=receiver.url,
    )
    arrivals = {arrival.json()["data"]["taskId"]: arrival for arrival in receiver.wait_for(2)}
    assert set(arrivals) == {ok, failing}

    for task_id, state in ((ok, "success"), (failing, "failed")):
        arrival = arrivals[task_id]
        status = status_body(server, key, task_id)
        assert status["data"]["state"] == state
        assert arrival.verify(secret) == status  # the signed body is the status response, exactly
        delivery = wait_delivery(server, key, task_id, lambda d: d["state"] == "delivered")
        assert arrival.headers["webhook-id"] == delivery["id"]
        assert [a["statusCode"] for a in delivery["attempts"]] == [200]
        # Delivered promptly after the task ended: both clocks are this machine's.
        assert 0 <= arrival.at_ns / 1e6 - status["data"]["completeTime"] < 2000
    assert arrivals[failing].json()["data"]["failCode"] == "DEMO_FAIL"
    assert len(receiver.arrivals) == 2

    metrics = server.http.get("/metrics")
    assert metrics.status_code == 200
    assert 'gengate_webhook_attempts_total{outcome="delivered"} 2.0' in metrics.text


def test_pending_callbacks_survive_sigkill(
    start_gengate: Any, receivers: Callable[..., ThreadReceiver], tmp_path: Path
) -> None:
    """The receiver is down, the first attempts fail, the server is killed while the retries
    wait; once the receiver and the server are back, every callback arrives, once."""
    data_dir = tmp_path / "callback-data"
    env = {**ALLOW, "GENGATE_WEBHOOK_RETRY_SCHEDULE": "0,3,0.2,0.2,0.2"}
    port = reserve_port()
    url = f"http://127.0.0.1:{port}/hook"
    first = start_gengate("callbacks-killed", data_dir=data_dir, env=env)
    key = first.create_key("durable-callbacks")["key"]
    inputs = [ECHO, {**ECHO, "data": {"n": 2}}, {**ECHO, "fail_code": "DEMO_FAIL"}]
    tasks = [first.submit_ok(key, "demo-echo", i, request_type="callback", callback_url=url) for i in inputs]
    waiting = [wait_delivery(first, key, task_id, lambda d: len(d["attempts"]) == 1) for task_id in tasks]
    due = min(d["nextAttemptAt"] for d in waiting)
    assert time.time() * 1000 < due - 500, "too slow to kill the server before the retries"
    assert first.kill() == -9
    for delivery in waiting:
        assert delivery["state"] == "pending"
        [attempt] = delivery["attempts"]
        assert attempt["statusCode"] is None
        assert "connect" in attempt["error"].lower()

    receiver = receivers(port=port)
    restarted = start_gengate("callbacks-restarted", data_dir=data_dir, env=env, admin_key=first.admin_key)
    arrivals = receiver.wait_for(3, timeout=15)
    time.sleep(0.3)  # nothing more comes
    assert len(receiver.arrivals) == 3
    secret = webhook_secret(restarted, key)
    by_task = {arrival.verify(secret)["data"]["taskId"]: arrival for arrival in arrivals}
    assert set(by_task) == set(tasks)
    for task_id, before in zip(tasks, waiting, strict=True):
        assert by_task[task_id].json() == status_body(restarted, key, task_id)
        assert by_task[task_id].headers["webhook-id"] == before["id"]
        after = wait_delivery(restarted, key, task_id, lambda d: d["state"] == "delivered")
        assert [a["statusCode"] for a in after["attempts"]] == [None, 200]
        assert after["attempts"][0] == before["attempts"][0]


def test_callback_refused_at_delivery_without_the_allow_list(
    start_gengate: Any, receivers: Callable[..., ThreadReceiver], tmp_path: Path, assert_error: Any
) -> None:
    """Allowed when submitted, but the server that runs the task no longer admits loopback: the
    attempt is refused before connecting and recorded, and since an address literal cannot
    become acceptable, the delivery fails at once; the receiver sees no connection at all."""
    data_dir = tmp_path / "ssrf-data"
    receiver = receivers()
    accepting = start_gengate("allows-loopback", data_dir=data_dir, env=ALLOW, workers=0)
    key = accepting.create_key("ssrf")["key"]
    task_id = accepting.submit_ok(key, "demo-echo", ECHO, request_type="callback", callback_url=receiver.url)
    accepting.stop()

    strict = start_gengate(
        "denies-loopback",
        data_dir=data_dir,
        admin_key=accepting.admin_key,
        env={"GENGATE_WEBHOOK_RETRY_SCHEDULE": "0,0.2,0.2"},
    )
    assert strict.wait_task(key, "demo-echo", task_id)["state"] == "success"
    delivery = wait_delivery(strict, key, task_id, lambda d: d["state"] != "pending")
    assert delivery["state"] == "failed"
    assert len(delivery["attempts"]) == 1
    for attempt in delivery["attempts"]:
        assert attempt["statusCode"] is None
        assert attempt["latencyMs"] is None
        assert attempt["error"].startswith("refused: ")
        assert "loopback" in attempt["error"]
    assert receiver.connections == 0
    assert receiver.arrivals == []

    again = strict.submit(key, "demo-echo", ECHO, request_type="callback", callback_url=receiver.url)
    assert_error(again, 400, "bad_request", mentions="callback_url")
