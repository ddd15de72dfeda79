"""A KIE-style client and an XHuo-style client drive a running server.

Both clients are written from the seed documents alone (004 for KIE, 003 for XHuo, 001 for
the status poll an XHuo client falls back to), with nothing but httpx: they know the wire
format, not gengate. If they work, a client written for those services works against us.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.e2e

#: The e2e conftest's `GengateServer` and `Launcher` (conftest modules are not imported by name).
GengateServer = Any
Launcher = Any


# -- a KIE jobs client, from seed 004 -----------------------------------------------------------
class KieError(Exception):
    pass


@dataclass
class KieClient:
    """`createTask`, then poll `recordInfo` until `success` or `fail`; `{code, msg, data}`."""

    base_url: str
    api_key: str
    poll_s: float = 0.1

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        response = httpx.request(method, self.base_url + path, headers=headers, timeout=30, **kwargs)
        body = response.json()
        if body.get("code") != 200:
            raise KieError(f"{body.get('code')}: {body.get('msg')}")
        return body["data"]

    def create_task(self, model: str, task_input: dict[str, Any], call_back_url: str | None = None) -> str:
        request: dict[str, Any] = {"model": model, "input": task_input}
        if call_back_url:
            request["callBackUrl"] = call_back_url
        task_id: str = self._call("POST", "/api/v1/jobs/createTask", json=request)["taskId"]
        return task_id

    def record_info(self, task_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self._call("GET", "/api/v1/jobs/recordInfo", params={"taskId": task_id})
        return data

    def wait(self, task_id: str, timeout: float = 30) -> dict[str, Any]:
        """ "The final task result must be determined from data.state." (seed 004)"""
        deadline = time.monotonic() + timeout
        while True:
            data = self.record_info(task_id)
            if data["state"] in ("success", "fail"):
                return data
            if time.monotonic() > deadline:
                raise KieError(f"task {task_id} still {data['state']}")
            time.sleep(self.poll_s)

    @staticmethod
    def result_urls(data: dict[str, Any]) -> list[str]:
        urls: list[str] = json.loads(data["resultJson"])["resultUrls"]
        return urls


# -- an XHuo client, from seed 003 (and seed 001's status poll) ---------------------------------
class XhuoError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {body['error']['code']}: {body['error']['message']} ({body['trace_id']})")
        self.status = status
        self.body = body
        self.code: str = body["error"]["code"]


@dataclass
class XhuoClient:
    """POST and read the business fields. Per seed 003: retry 429 and 5xx with backoff and
    jitter, never other 4xx; a 504 that names a task is polled instead of resubmitted."""

    base_url: str
    api_key: str
    retries: int = 2
    poll_s: float = 0.1
    attempts: list[int] = field(default_factory=list)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def run(self, model: str, payload: dict[str, Any]) -> dict[str, Any]:
        for attempt in range(self.retries + 1):
            response = httpx.post(
                f"{self.base_url}/api/v1/run/{model}", json=payload, headers=self._headers(), timeout=120
            )
            self.attempts.append(response.status_code)
            body: dict[str, Any] = response.json()
            if response.status_code == 200:
                assert body["success"] is True
                return body
            assert "success" not in body, body  # error bodies carry only error and trace_id
            if response.status_code == 504 and "task_id" in body:
                return self.poll(model, body["task_id"])
            if (response.status_code != 429 and response.status_code < 500) or attempt == self.retries:
                raise XhuoError(response.status_code, body)
            time.sleep(0.05 * 2**attempt * random.uniform(0.5, 1.5))
        raise AssertionError("unreachable")

    def poll(self, model: str, task_id: str, timeout: float = 30) -> dict[str, Any]:
        """Seed 001's statusTask until a terminal state, as the business fields of a run."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = httpx.get(
                f"{self.base_url}/api/v1/statusTask/{model}",
                params={"taskId": task_id},
                headers=self._headers(),
                timeout=30,
            )
            data = response.json()["data"]
            if data["state"] == "success":
                urls = json.loads(data["resultJson"])["resultUrls"]
                return {"success": True, "task_id": task_id, "result_urls": urls, "polled": True}
            if data["state"] == "failed":
                raise XhuoError(
                    200, {"error": {"code": data["failCode"], "message": data["failMsg"]}, "trace_id": ""}
                )
            time.sleep(self.poll_s)
        raise AssertionError(f"task {task_id} did not finish")


# -- a callback receiver ------------------------------------------------------------------------
@dataclass
class Receiver:
    """A loopback HTTP server recording every POSTed JSON body."""

    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                with receiver.arrived:
                    receiver.bodies.append(json.loads(body))
                    receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                    receiver.arrived.notify_all()
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def body_of(self, task_id: str, key: str, timeout: float = 20) -> dict[str, Any]:
        with self.arrived:
            ok = self.arrived.wait_for(
                lambda: any(_task_id_of(b, key) == task_id for b in self.bodies), timeout=timeout
            )
            assert ok, f"no callback for {task_id}: {self.bodies}"
            return next(b for b in self.bodies if _task_id_of(b, key) == task_id)


def _task_id_of(body: dict[str, Any], key: str) -> Any:
    return body.get("data", {}).get("taskId") if key == "taskId" else body.get(key)


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def hooks_server(start_gengate_module: Launcher) -> GengateServer:
    """Callbacks to loopback admitted, and synchronous runs that wait at most 1 s."""
    return start_gengate_module(
        "dialects", env={"GENGATE_WEBHOOK_ALLOW": "127.0.0.0/8", "GENGATE_SYNC_WAIT": "1"}
    )


def download(url: str) -> bytes:
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200, response.text
    return response.content


# -- KIE ----------------------------------------------------------------------------------------
def test_kie_client_creates_polls_and_downloads(gengate_server: GengateServer, api_key: str) -> None:
    kie = KieClient(gengate_server.base_url, api_key)
    task_input = {"prompt": "A cinematic portrait of a robot painter", "width": 64, "height": 48}
    task_id = kie.create_task("demo-image", task_input)
    first = kie.record_info(task_id)
    assert first["state"] in ("waiting", "success")
    data = kie.wait(task_id)
    assert data["state"] == "success", data
    assert data["model"] == "demo-image"
    assert json.loads(data["param"]) == {"model": "demo-image", "input": task_input}
    assert (data["failCode"], data["failMsg"]) == (None, None)
    assert isinstance(data["costTime"], int)
    assert data["createTime"] <= data["completeTime"]
    (url,) = kie.result_urls(data)
    assert download(url).startswith(b"\x89PNG")


def test_kie_client_sees_a_failure_as_fail(gengate_server: GengateServer, api_key: str) -> None:
    kie = KieClient(gengate_server.base_url, api_key)
    data = kie.wait(kie.create_task("demo-echo", {"fail_code": "CONTENT_VIOLATION"}))
    assert (data["state"], data["failCode"], data["resultJson"]) == ("fail", "CONTENT_VIOLATION", None)
    assert data["failMsg"]


def test_kie_client_errors(gengate_server: GengateServer, api_key: str) -> None:
    kie = KieClient(gengate_server.base_url, api_key)
    with pytest.raises(KieError, match=r"^404: "):
        kie.create_task("no-such-model", {})
    with pytest.raises(KieError, match=r"^404: "):
        kie.record_info("task_doesnotexist00000000000")
    with pytest.raises(KieError, match=r"^401: "):
        KieClient(gengate_server.base_url, "wrong").record_info("task_x")


# -- XHuo ---------------------------------------------------------------------------------------
def test_xhuo_client_runs_and_downloads(gengate_server: GengateServer, api_key: str) -> None:
    client = XhuoClient(gengate_server.base_url, api_key)
    body = client.run("demo-image", {"prompt": "A cat", "width": 32, "height": 32, "n": 2})
    assert set(body) == {"success", "task_id", "trace_id", "result_urls", "cost_time"}
    assert len(body["result_urls"]) == 2
    assert all(download(url).startswith(b"\x89PNG") for url in body["result_urls"])
    assert client.attempts == [200]


def test_xhuo_client_does_not_retry_a_moderation_error(gengate_server: GengateServer, api_key: str) -> None:
    client = XhuoClient(gengate_server.base_url, api_key)
    with pytest.raises(XhuoError) as caught:
        client.run("demo-echo", {"fail_code": "CONTENT_VIOLATION"})
    assert (caught.value.status, caught.value.code) == (403, "CONTENT_VIOLATION")
    assert client.attempts == [403]
    with pytest.raises(XhuoError) as caught:
        XhuoClient(gengate_server.base_url, "wrong").run("demo-echo", {})
    assert (caught.value.status, caught.value.code) == (401, "invalid_token")
    assert set(caught.value.body) == {"error", "trace_id"}


def test_xhuo_client_retries_a_transient_failure(gengate_server: GengateServer, api_key: str) -> None:
    client = XhuoClient(gengate_server.base_url, api_key)
    with pytest.raises(XhuoError) as caught:
        client.run("demo-echo", {"fail_code": "PROVIDER_ERROR"})
    assert caught.value.code == "PROVIDER_ERROR"
    assert client.attempts == [500, 500, 500]


def test_xhuo_client_polls_after_a_504(hooks_server: GengateServer) -> None:
    key = hooks_server.create_key("xhuo-504")["key"]
    client = XhuoClient(hooks_server.base_url, key)
    body = client.run("demo-image", {"prompt": "slow", "width": 32, "height": 32, "duration_ms": 2000})
    assert client.attempts == [504]
    assert body["polled"] is True
    assert download(body["result_urls"][0]).startswith(b"\x89PNG")
    record = KieClient(hooks_server.base_url, key).record_info(body["task_id"])
    assert KieClient.result_urls(record) == body["result_urls"]


# -- callbacks and cross-dialect reads ----------------------------------------------------------
def test_callbacks_in_each_dialect(hooks_server: GengateServer, receiver: Receiver) -> None:
    key = hooks_server.create_key("callbacks")["key"]
    kie = KieClient(hooks_server.base_url, key)
    kie_task = kie.create_task("demo-echo", {"prompt": "kie callback"}, call_back_url=receiver.url)
    run = httpx.post(
        f"{hooks_server.base_url}/api/v1/run/demo-echo",
        json={"prompt": "xhuo callback", "callback_url": receiver.url},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert run.status_code == 200
    accepted = run.json()
    assert set(accepted) == {"success", "task_id", "trace_id"}
    failed = httpx.post(
        f"{hooks_server.base_url}/api/v1/run/demo-echo",
        json={"fail_code": "CONTENT_VIOLATION", "callback_url": receiver.url},
        headers={"Authorization": f"Bearer {key}"},
    ).json()

    kie_body = receiver.body_of(kie_task, "taskId")
    assert kie_body == {"code": 200, "msg": "success", "data": kie.record_info(kie_task)}
    xhuo_body = receiver.body_of(accepted["task_id"], "task_id")
    assert set(xhuo_body) == {"success", "task_id", "trace_id", "result_urls", "cost_time"}
    assert (xhuo_body["success"], xhuo_body["trace_id"]) == (True, accepted["trace_id"])
    assert json.loads(download(xhuo_body["result_urls"][0]))["prompt"] == "xhuo callback"
    fail_body = receiver.body_of(failed["task_id"], "task_id")
    assert fail_body["success"] is False
    assert fail_body["error"]["code"] == "CONTENT_VIOLATION"
    assert set(fail_body) == {"success", "task_id", "trace_id", "error"}
    assert all("webhook-signature" in headers for headers in receiver.headers)


def test_one_task_read_by_both_clients(gengate_server: GengateServer, api_key: str) -> None:
    kie = KieClient(gengate_server.base_url, api_key)
    xhuo = XhuoClient(gengate_server.base_url, api_key)
    ran = xhuo.run("demo-echo", {"prompt": "shared"})
    record = kie.wait(ran["task_id"])
    assert KieClient.result_urls(record) == ran["result_urls"]
    assert json.loads(record["param"]) == {"prompt": "shared"}
    created = kie.create_task("demo-echo", {"prompt": "made by kie"})
    polled = xhuo.poll("demo-echo", created)
    assert polled["result_urls"] == KieClient.result_urls(kie.wait(created))
