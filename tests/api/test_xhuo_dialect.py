"""The XHuo dialect in process: `POST /api/v1/run/{model}` against seed 003 (sync success,
task failures, the 504 that names the task, callbacks, errors), and one task seen through
every dialect's view."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator
from ipaddress import ip_network
from typing import Any

import httpx
import orjson
import pytest

from gengate.api.app import build_app
from gengate.dialects import render_callback, xhuo
from gengate.runtime import Gateway

RUN = "/api/v1/run/"
HOOK = "http://127.0.0.1:9/hook"  # loopback, admitted per test; nothing listens on the discard port
SUCCESS_KEYS = {"success", "task_id", "trace_id", "result_urls", "cost_time"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_xhuo_error(
    response: httpx.Response, status: int, code: str, *, task_id: bool = False
) -> dict[str, Any]:
    """Seed 003: no `success`, only `error` and `trace_id` (and `task_id` when a task exists)."""
    body: dict[str, Any] = response.json()
    assert response.status_code == status, body
    assert set(body) == ({"error", "trace_id", "task_id"} if task_id else {"error", "trace_id"}), body
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert body["trace_id"] == response.headers["x-trace-id"]
    return body


@pytest.fixture
def allow_loopback(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gateway.tasks.callback_policy, "allowed", (ip_network("127.0.0.0/8"),))


@pytest.fixture
async def short_wait(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    """The same gateway behind an app whose synchronous runs wait at most 0.3 s."""
    app = build_app(dataclasses.replace(gateway.api_context(), sync_wait_s=0.3))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway.test"
    ) as http:
        yield http


async def record(http: httpx.AsyncClient, key: str, task_id: str, **params: Any) -> dict[str, Any]:
    response = await http.get(
        "/api/v1/jobs/recordInfo", params={"taskId": task_id, **params}, headers=bearer(key)
    )
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def status(http: httpx.AsyncClient, key: str, model: str, task_id: str) -> dict[str, Any]:
    response = await http.get(f"/api/v1/statusTask/{model}", params={"taskId": task_id}, headers=bearer(key))
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def finished(http: httpx.AsyncClient, key: str, task_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while (data := await record(http, key, task_id, wait=5))["state"] == "waiting":
        assert time.monotonic() < deadline, data
    return data


# -- synchronous runs ---------------------------------------------------------------------------
async def test_run_answers_the_result(http: httpx.AsyncClient, api_key: str, gateway: Gateway) -> None:
    response = await http.post(
        RUN + "demo-image",
        json={"prompt": "A cat", "width": 32, "height": 32, "n": 2},
        headers=bearer(api_key),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == SUCCESS_KEYS
    assert body["success"] is True
    assert body["trace_id"] == response.headers["x-trace-id"]
    assert isinstance(body["cost_time"], int)
    assert len(body["result_urls"]) == 2
    download = await http.get(httpx.URL(body["result_urls"][1]).raw_path.decode())
    assert download.status_code == 200
    assert download.content.startswith(b"\x89PNG")
    task = await gateway.store.get_task(body["task_id"])
    assert task is not None
    assert (task.dialect, task.request_type, task.trace_id) == ("xhuo", "sync", body["trace_id"])


@pytest.mark.parametrize(
    ("fail_code", "status"),
    [
        ("CONTENT_VIOLATION", 403),
        ("INVALID_INPUT", 400),
        ("TIMEOUT", 504),
        ("CANCELED", 409),
        ("PROVIDER_ERROR", 500),
        ("WORKER_LOST", 500),
        ("SOMETHING_ELSE", 500),
    ],
)
async def test_failed_task_is_an_error_with_its_fail_code(
    http: httpx.AsyncClient, api_key: str, fail_code: str, status: int
) -> None:
    response = await http.post(RUN + "demo-echo", json={"fail_code": fail_code}, headers=bearer(api_key))
    body = assert_xhuo_error(response, status, fail_code, task_id=True)
    assert fail_code in body["error"]["message"]
    data = await record(http, api_key, body["task_id"])
    assert (data["state"], data["failCode"], data["failMsg"]) == ("fail", fail_code, body["error"]["message"])


async def test_wait_past_the_limit_is_504_naming_the_task(
    short_wait: httpx.AsyncClient, api_key: str
) -> None:
    http = short_wait
    started = time.perf_counter()
    response = await http.post(RUN + "demo-echo", json={"duration_ms": 1500}, headers=bearer(api_key))
    assert 0.28 <= time.perf_counter() - started < 1.3
    body = assert_xhuo_error(response, 504, "timeout", task_id=True)
    assert "statusTask" in body["error"]["message"]
    task_id = body["task_id"]
    assert (await record(http, api_key, task_id))["state"] == "waiting"
    data = await finished(http, api_key, task_id)
    assert data["state"] == "success"
    assert (await status(http, api_key, "demo-echo", task_id))["state"] == "success"


async def test_run_without_mode_uses_the_default_and_keeps_the_request(
    http: httpx.AsyncClient, api_key: str, gateway: Gateway
) -> None:
    response = await http.post(RUN + "demo-echo", json={"prompt": "p", "data": [1]}, headers=bearer(api_key))
    body = response.json()
    task = await gateway.store.get_task(body["task_id"])
    assert task is not None
    assert task.request == {"prompt": "p", "data": [1]}
    assert task.input["mode"] == "echo"
    result = await http.get(httpx.URL(body["result_urls"][0]).raw_path.decode())
    assert result.json()["data"] == [1]


# -- callbacks ----------------------------------------------------------------------------------
@pytest.mark.usefixtures("allow_loopback")
async def test_run_with_callback_answers_at_once(
    http: httpx.AsyncClient, api_key: str, gateway: Gateway
) -> None:
    response = await http.post(
        RUN + "demo-echo",
        json={"prompt": "cb", "callback_url": HOOK, "duration_ms": 300},
        headers=bearer(api_key),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"success", "task_id", "trace_id"}
    assert body["success"] is True
    assert body["trace_id"] == response.headers["x-trace-id"]
    assert (await record(http, api_key, body["task_id"]))["state"] == "waiting"
    await finished(http, api_key, body["task_id"])
    task = await gateway.store.get_task(body["task_id"])
    assert task is not None
    assert (task.dialect, task.request_type, task.callback_url) == ("xhuo", "callback", HOOK)
    assert "callback_url" not in task.input
    assert task.request["callback_url"] == HOOK
    sent = orjson.loads(render_callback(task.dialect, task, gateway.links))
    assert set(sent) == SUCCESS_KEYS
    assert (sent["success"], sent["task_id"], sent["trace_id"]) == (True, body["task_id"], body["trace_id"])
    assert (
        sent["result_urls"] == json.loads((await record(http, api_key, task.id))["resultJson"])["resultUrls"]
    )
    assert [d.dialect for d in await gateway.store.deliveries_of_task(task.id)] == ["xhuo"]


@pytest.mark.usefixtures("allow_loopback")
async def test_failure_callback_envelope(http: httpx.AsyncClient, api_key: str, gateway: Gateway) -> None:
    response = await http.post(
        RUN + "demo-echo",
        json={"callback_url": HOOK, "fail_code": "CONTENT_VIOLATION"},
        headers=bearer(api_key),
    )
    body = response.json()
    await finished(http, api_key, body["task_id"])
    task = await gateway.store.get_task(body["task_id"])
    assert task is not None
    sent = orjson.loads(render_callback(task.dialect, task, gateway.links))
    assert sent == {
        "success": False,
        "task_id": body["task_id"],
        "trace_id": body["trace_id"],
        "error": {"code": "CONTENT_VIOLATION", "message": task.fail_msg},
    }


# -- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "body", "status", "code", "fragment"),
    [
        ("demo-echo", b"{nope", 400, "bad_request", "not valid JSON"),
        ("demo-echo", b"[]", 400, "bad_request", "JSON object"),
        ("demo-image", b'{"prompt": "x", "width": 1}', 400, "bad_request", "width"),
        ("demo-image", b'{"prompt": "x", "colour": "red"}', 400, "bad_request", "colour"),
        ("demo-echo", b'{"callback_url": 5}', 400, "bad_request", "callback_url"),
        ("demo-echo", b'{"callback_url": "http://127.0.0.1/x"}', 400, "bad_request", "loopback"),
        ("no-such-model", b"{}", 404, "model_not_found", "no-such-model"),
    ],
)
async def test_run_errors(
    http: httpx.AsyncClient, api_key: str, *, path: str, body: bytes, status: int, code: str, fragment: str
) -> None:
    response = await http.post(RUN + path, content=body, headers=bearer(api_key))
    assert fragment in assert_xhuo_error(response, status, code)["error"]["message"]


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "code"),
    [
        ("POST", RUN + "demo-echo", {}, 401, "no_token"),
        ("POST", RUN + "demo-echo", {"Authorization": "Bearer wrong"}, 401, "invalid_token"),
        ("GET", RUN + "demo-echo", None, 405, "no_api"),
        ("POST", RUN, None, 404, "no_api"),
        ("POST", RUN + "demo-echo/extra", None, 404, "no_api"),
    ],
)
async def test_request_errors_in_the_xhuo_envelope(
    http: httpx.AsyncClient,
    api_key: str,
    *,
    method: str,
    path: str,
    headers: dict[str, str] | None,
    status: int,
    code: str,
) -> None:
    response = await http.request(
        method, path, headers=bearer(api_key) if headers is None else headers, json={}
    )
    assert_xhuo_error(response, status, code)


async def test_key_not_allowed_the_model_is_token_mismatched(
    http: httpx.AsyncClient, gateway: Gateway
) -> None:
    _key, secret = await gateway.keys.create("images only", models=["demo-image"])
    response = await http.post(RUN + "demo-echo", json={}, headers=bearer(secret))
    assert_xhuo_error(response, 401, "token_mismatched")


# -- one task, every view -----------------------------------------------------------------------
async def _create_each_way(http: httpx.AsyncClient, key: str) -> dict[str, str]:
    """A finished demo-echo task made through each dialect, by dialect."""
    apixo = await http.post(
        "/api/v1/generateTask/demo-echo", json={"input": {"mode": "echo", "prompt": "a"}}, headers=bearer(key)
    )
    kie = await http.post(
        "/api/v1/jobs/createTask", json={"model": "demo-echo", "input": {"prompt": "k"}}, headers=bearer(key)
    )
    run = await http.post(RUN + "demo-echo", json={"prompt": "x"}, headers=bearer(key))
    ids = {
        "apixo": apixo.json()["data"]["taskId"],
        "kie": kie.json()["data"]["taskId"],
        "xhuo": run.json()["task_id"],
    }
    for task_id in ids.values():
        await finished(http, key, task_id)
    return ids


async def test_one_task_every_view(http: httpx.AsyncClient, api_key: str, gateway: Gateway) -> None:
    ids = await _create_each_way(http, api_key)
    for made_by, task_id in ids.items():
        apixo = await status(http, api_key, "demo-echo", task_id)
        kie = await record(http, api_key, task_id)
        task = await gateway.store.get_task(task_id)
        assert task is not None
        assert task.dialect == made_by
        run = xhuo.run_result(task, gateway.links)
        assert apixo["taskId"] == kie["taskId"] == run["task_id"] == task_id
        assert (apixo["state"], kie["state"], run["success"]) == ("success", "success", True)
        assert apixo["resultJson"] == kie["resultJson"]
        assert json.loads(kie["resultJson"])["resultUrls"] == run["result_urls"]
        assert apixo["costTime"] == kie["costTime"] == run["cost_time"]
        assert (apixo["createTime"], apixo["completeTime"]) == (kie["createTime"], kie["completeTime"])
        assert json.loads(kie["param"]) == task.request  # the creating dialect's request
    assert json.loads((await record(http, api_key, ids["kie"]))["param"])["model"] == "demo-echo"
    assert "input" in json.loads((await record(http, api_key, ids["apixo"]))["param"])
    assert json.loads((await record(http, api_key, ids["xhuo"]))["param"]) == {"prompt": "x"}


async def test_failed_run_every_view(http: httpx.AsyncClient, api_key: str) -> None:
    response = await http.post(
        RUN + "demo-echo", json={"fail_code": "CONTENT_VIOLATION"}, headers=bearer(api_key)
    )
    task_id = assert_xhuo_error(response, 403, "CONTENT_VIOLATION", task_id=True)["task_id"]
    apixo = await status(http, api_key, "demo-echo", task_id)
    kie = await record(http, api_key, task_id)
    assert (apixo["state"], apixo["failCode"]) == ("failed", "CONTENT_VIOLATION")
    assert (kie["state"], kie["failCode"]) == ("fail", "CONTENT_VIOLATION")
    assert apixo["failMsg"] == kie["failMsg"] == response.json()["error"]["message"]
    wrong_model = await http.get(
        "/api/v1/statusTask/demo-image", params={"taskId": task_id}, headers=bearer(api_key)
    )
    assert wrong_model.json()["error"]["code"] == "task_not_found"


async def test_openapi_documents_the_run_route(http: httpx.AsyncClient) -> None:
    document = (await http.get("/openapi.json")).json()
    run = document["paths"]["/api/v1/run/{model}"]["post"]
    assert set(run["responses"]) >= {"200", "400", "401", "403", "404", "409", "500", "504"}
    schemas = document["components"]["schemas"]
    assert "callback_url" in schemas["RunEchoInput"]["properties"]
    assert "prompt" in schemas["RunTextToImageInput"]["properties"]
    assert set(schemas["XhuoError"]["required"]) == {"error", "trace_id"}


async def test_idempotency_key_replays_the_run(http: httpx.AsyncClient, api_key: str) -> None:
    headers = {**bearer(api_key), "Idempotency-Key": "xhuo-1"}
    first = await http.post(RUN + "demo-echo", json={"prompt": "once"}, headers=headers)
    again = await http.post(RUN + "demo-echo", json={"prompt": "once"}, headers=headers)
    assert first.json()["task_id"] == again.json()["task_id"]
    assert again.json()["trace_id"] == again.headers["x-trace-id"] != first.json()["trace_id"]
    assert again.json()["result_urls"] == first.json()["result_urls"]
    other = await http.post(RUN + "demo-echo", json={"prompt": "twice"}, headers=headers)
    assert_xhuo_error(other, 409, "conflict")
