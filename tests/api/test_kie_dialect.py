"""The KIE jobs dialect in process: `createTask` and `recordInfo` field for field as seed 004,
its errors, long-poll, callback body, and the hot path's exact-path routes."""

from __future__ import annotations

import asyncio
import json
import time
from ipaddress import ip_network
from typing import Any

import httpx
import orjson
import pytest

from gengate.api.app import build_app
from gengate.api.hotpath import HotPath, HotRoute
from gengate.dialects import render_callback
from gengate.domain.dialect import Dialect
from gengate.observability.requests import RequestLog
from gengate.runtime import Gateway

CREATE = "/api/v1/jobs/createTask"
RECORD = "/api/v1/jobs/recordInfo"
#: Every field of seed 004's `data`, present in every state.
SEED_FIELDS = {
    "taskId",
    "model",
    "state",
    "param",
    "resultJson",
    "failCode",
    "failMsg",
    "costTime",
    "completeTime",
    "createTime",
}
#: What we add, which KIE clients ignore.
EXTRA_FIELDS = {"progress"}
KIE_ERROR_KEYS = {"code", "msg", "data", "error", "trace_id"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def create(http: httpx.AsyncClient, key: str, body: dict[str, Any]) -> str:
    response = await http.post(CREATE, json=body, headers=bearer(key))
    assert response.status_code == 200, response.text
    envelope = response.json()
    assert envelope == {"code": 200, "msg": "success", "data": {"taskId": envelope["data"]["taskId"]}}
    task_id: str = envelope["data"]["taskId"]
    assert task_id.startswith("task_")
    return task_id


async def record(http: httpx.AsyncClient, key: str, task_id: str, **params: Any) -> dict[str, Any]:
    response = await http.get(RECORD, params={"taskId": task_id, **params}, headers=bearer(key))
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"code", "msg", "data"}, body
    assert (body["code"], body["msg"]) == (200, "success")
    data: dict[str, Any] = body["data"]
    assert set(data) == SEED_FIELDS | EXTRA_FIELDS, data
    return data


async def finished(http: httpx.AsyncClient, key: str, task_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        data = await record(http, key, task_id, wait=5)
        if data["state"] != "waiting":
            return data
        assert time.monotonic() < deadline, data


def assert_kie_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert set(body) == KIE_ERROR_KEYS, body
    assert response.status_code == status == body["code"], body
    assert body["data"] is None
    assert body["error"]["code"] == code, body
    assert body["msg"] == body["error"]["message"]
    assert body["trace_id"] == response.headers["x-trace-id"]
    return body


async def cancel(gateway: Gateway, secret: str, task_id: str) -> None:
    key = await gateway.keys.authenticate(f"Bearer {secret}")
    await gateway.tasks.cancel(key, task_id)


# -- the states, field for field ----------------------------------------------------------------
async def test_pending_is_waiting_with_every_field_null_but_the_known(
    idle: tuple[httpx.AsyncClient, str, Gateway],
) -> None:
    http, key, _gateway = idle
    request = {"model": "demo-echo", "input": {"prompt": "A cat"}}
    task_id = await create(http, key, request)
    data = await record(http, key, task_id)
    assert data == {
        "taskId": task_id,
        "model": "demo-echo",
        "state": "waiting",
        "param": data["param"],
        "resultJson": None,
        "failCode": None,
        "failMsg": None,
        "costTime": None,
        "completeTime": None,
        "createTime": data["createTime"],
        "progress": None,
    }
    assert json.loads(data["param"]) == request
    assert abs(data["createTime"] - time.time() * 1000) < 60_000


async def test_processing_is_waiting_with_progress(http: httpx.AsyncClient, api_key: str) -> None:
    task_id = await create(http, api_key, {"model": "demo-echo", "input": {"duration_ms": 3000}})
    data = await record(http, api_key, task_id)
    while data["progress"] is None:
        data = await record(http, api_key, task_id, wait=5)
    assert data["state"] == "waiting"
    assert 0 < data["progress"] < 100
    assert [data[f] for f in ("resultJson", "failCode", "failMsg", "costTime", "completeTime")] == [None] * 5


async def test_success_has_result_json_cost_and_times(http: httpx.AsyncClient, api_key: str) -> None:
    request = {"model": "demo-image", "input": {"prompt": "A cat", "width": 32, "height": 32, "n": 2}}
    task_id = await create(http, api_key, request)
    data = await finished(http, api_key, task_id)
    assert data["state"] == "success"
    assert (data["failCode"], data["failMsg"]) == (None, None)
    assert isinstance(data["costTime"], int)
    assert data["completeTime"] >= data["createTime"]
    assert json.loads(data["param"]) == request
    assert isinstance(data["resultJson"], str)
    result = json.loads(data["resultJson"])
    assert set(result) == {"resultUrls"}
    assert len(result["resultUrls"]) == 2
    url = httpx.URL(result["resultUrls"][0])
    download = await http.get(url.raw_path.decode())
    assert download.status_code == 200
    assert download.content.startswith(b"\x89PNG")


@pytest.mark.parametrize("fail_code", ["CONTENT_VIOLATION", "PROVIDER_ERROR"])
async def test_failure_is_fail_with_code_and_message(
    http: httpx.AsyncClient, api_key: str, fail_code: str
) -> None:
    task_id = await create(http, api_key, {"model": "demo-echo", "input": {"fail_code": fail_code}})
    data = await finished(http, api_key, task_id)
    assert data["state"] == "fail"
    assert data["failCode"] == fail_code
    assert fail_code in data["failMsg"]
    assert (data["resultJson"], data["costTime"]) == (None, None)
    assert data["completeTime"] >= data["createTime"]


async def test_canceled_is_fail(idle: tuple[httpx.AsyncClient, str, Gateway]) -> None:
    http, key, gateway = idle
    task_id = await create(http, key, {"model": "demo-echo", "input": {}})
    await cancel(gateway, key, task_id)
    data = await record(http, key, task_id)
    assert (data["state"], data["failCode"]) == ("fail", "CANCELED")
    assert data["failMsg"]


async def test_framework_route_and_hot_path_answer_alike(gateway: Gateway, api_key: str) -> None:
    """The hot path answers recordInfo in front of the framework; behind it the Starlette
    route must give the same body, error or not."""
    logged = build_app(gateway.api_context())
    assert isinstance(logged, RequestLog)  # the request line's layer, in front of everything
    front = logged.app
    assert isinstance(front, HotPath)
    answers: list[list[Any]] = []
    for app in (front, front.app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
            if not answers:
                task_id = await create(http, api_key, {"model": "demo-echo", "input": {"prompt": "x"}})
                await finished(http, api_key, task_id)
            got = []
            for params in ({"taskId": task_id}, {"taskId": "task_nope"}, {"taskId": task_id, "wait": "x"}):
                response = await http.get(RECORD, params=params, headers=bearer(api_key))
                body = response.json()
                body.pop("trace_id", None)
                got.append([response.status_code, body])
            answers.append(got)
    assert answers[0] == answers[1]
    assert [status for status, _ in answers[0]] == [200, 404, 400]


# -- long-poll ------------------------------------------------------------------------------------
async def test_long_poll_times_out_unchanged(idle: tuple[httpx.AsyncClient, str, Gateway]) -> None:
    http, key, _gateway = idle
    task_id = await create(http, key, {"model": "demo-echo", "input": {}})
    started = time.perf_counter()
    data = await record(http, key, task_id, wait=0.3)
    assert 0.28 <= time.perf_counter() - started < 2
    assert data["state"] == "waiting"


async def test_long_poll_wakes_within_50ms_of_a_change(idle: tuple[httpx.AsyncClient, str, Gateway]) -> None:
    http, key, gateway = idle
    task_id = await create(http, key, {"model": "demo-echo", "input": {}})
    poll = asyncio.create_task(record(http, key, task_id, wait=10))
    await asyncio.sleep(0.2)
    assert not poll.done()
    changed_at = time.perf_counter()
    await cancel(gateway, key, task_id)
    data = await poll
    assert time.perf_counter() - changed_at < 0.05 * 4  # 50 ms target; slack for a loaded machine
    assert (data["state"], data["failCode"]) == ("fail", "CANCELED")


async def test_long_poll_on_a_finished_task_answers_at_once(http: httpx.AsyncClient, api_key: str) -> None:
    task_id = await create(http, api_key, {"model": "demo-echo", "input": {}})
    await finished(http, api_key, task_id)
    started = time.perf_counter()
    data = await record(http, api_key, task_id, wait=1000)  # capped, not refused
    assert time.perf_counter() - started < 1
    assert data["state"] == "success"


@pytest.mark.parametrize("wait", ["x", "-1", "nan", "inf", "1e999"])
async def test_bad_wait_is_a_bad_request(http: httpx.AsyncClient, api_key: str, wait: str) -> None:
    task_id = await create(http, api_key, {"model": "demo-echo", "input": {}})
    response = await http.get(RECORD, params={"taskId": task_id, "wait": wait}, headers=bearer(api_key))
    assert "wait" in assert_kie_error(response, 400, "bad_request")["msg"]


# -- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "status", "code", "fragment"),
    [
        ({"input": {}}, 400, "bad_request", "`model` is required"),
        ({"model": 7, "input": {}}, 400, "bad_request", "`model` must be a string"),
        ({"model": "no-such-model", "input": {}}, 404, "model_not_found", "no-such-model"),
        ({"model": "demo-echo"}, 400, "bad_request", "`input` is required"),
        ({"model": "demo-image", "input": {"prompt": "x", "width": 1}}, 400, "bad_request", "input.width"),
        ({"model": "demo-echo", "input": {}, "callBackUrl": 5}, 400, "bad_request", "callBackUrl"),
        (
            {"model": "demo-echo", "input": {}, "callBackUrl": "http://127.0.0.1/x"},
            400,
            "bad_request",
            "loopback",
        ),
    ],
)
async def test_create_errors(
    http: httpx.AsyncClient, api_key: str, *, body: dict[str, Any], status: int, code: str, fragment: str
) -> None:
    response = await http.post(CREATE, json=body, headers=bearer(api_key))
    assert fragment in assert_kie_error(response, status, code)["msg"]


async def test_malformed_json_is_a_bad_request(http: httpx.AsyncClient, api_key: str) -> None:
    response = await http.post(CREATE, content=b"{nope", headers=bearer(api_key))
    assert_kie_error(response, 400, "bad_request")


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "code"),
    [
        ("POST", CREATE, {}, 401, "no_token"),
        ("POST", CREATE, {"Authorization": "Bearer wrong"}, 401, "invalid_token"),
        ("GET", RECORD + "?taskId=task_x", {}, 401, "no_token"),
        ("GET", RECORD + "?taskId=task_x", {"Authorization": "Bearer wrong"}, 401, "invalid_token"),
        ("GET", RECORD, None, 400, "bad_request"),
        ("GET", RECORD + "?taskId=", None, 400, "bad_request"),
        ("GET", RECORD + "?taskId=task_doesnotexist", None, 404, "task_not_found"),
        ("POST", RECORD + "?taskId=task_x", None, 405, "no_api"),
        ("GET", CREATE, None, 405, "no_api"),
        ("GET", RECORD + "/extra?taskId=task_x", None, 404, "no_api"),
        ("GET", "/api/v1/jobs/nothing", None, 404, "no_api"),
    ],
)
async def test_request_errors_in_the_kie_envelope(
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
        method, path, headers=bearer(api_key) if headers is None else headers, json={"model": "demo-echo"}
    )
    assert_kie_error(response, status, code)


async def test_another_keys_task_is_not_found(
    http: httpx.AsyncClient, api_key: str, gateway: Gateway
) -> None:
    task_id = await create(http, api_key, {"model": "demo-echo", "input": {}})
    _other, other_secret = await gateway.keys.create("other")
    response = await http.get(RECORD, params={"taskId": task_id}, headers=bearer(other_secret))
    assert_kie_error(response, 404, "task_not_found")


# -- callbacks ------------------------------------------------------------------------------------
async def test_callback_body_is_the_record_info_response(
    http: httpx.AsyncClient, api_key: str, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Loopback admitted for this test; nothing listens on the discard port.
    monkeypatch.setattr(gateway.tasks.callback_policy, "allowed", (ip_network("127.0.0.0/8"),))
    request = {"model": "demo-echo", "callBackUrl": "http://127.0.0.1:9/hook", "input": {"prompt": "cb"}}
    task_id = await create(http, api_key, request)
    await finished(http, api_key, task_id)
    task = await gateway.store.get_task(task_id)
    assert task is not None
    assert (task.dialect, task.request_type, task.callback_url) == ("kie", "callback", request["callBackUrl"])
    response = await http.get(RECORD, params={"taskId": task_id}, headers=bearer(api_key))
    assert orjson.loads(render_callback(task.dialect, task, gateway.links)) == response.json()
    deliveries = await gateway.store.deliveries_of_task(task_id)
    assert [d.dialect for d in deliveries] == ["kie"]


async def test_callback_body_of_a_failed_task(
    http: httpx.AsyncClient, api_key: str, gateway: Gateway
) -> None:
    task_id = await create(http, api_key, {"model": "demo-echo", "input": {"fail_code": "TIMEOUT"}})
    await finished(http, api_key, task_id)
    task = await gateway.store.get_task(task_id)
    assert task is not None
    body = orjson.loads(render_callback(task.dialect, task, gateway.links))
    assert (body["code"], body["msg"]) == (200, "success")
    assert set(body["data"]) == SEED_FIELDS | EXTRA_FIELDS
    assert (body["data"]["state"], body["data"]["failCode"]) == ("fail", "TIMEOUT")


async def test_async_create_owes_no_callback(http: httpx.AsyncClient, api_key: str, gateway: Gateway) -> None:
    task_id = await create(http, api_key, {"model": "demo-echo", "input": {}, "callBackUrl": ""})
    await finished(http, api_key, task_id)
    task = await gateway.store.get_task(task_id)
    assert task is not None
    assert (task.request_type, task.callback_url) == ("async", None)
    assert await gateway.store.deliveries_of_task(task_id) == []


# -- the hot path's exact routes ------------------------------------------------------------------
async def _data(_scope: Any) -> str:
    return "ok"


@pytest.mark.parametrize(
    ("route", "method", "path", "hit"),
    [
        (HotRoute("GET", "/a/b", _data, exact=True), "GET", "/a/b", True),
        (HotRoute("GET", "/a/b", _data, exact=True), "GET", "/a/b/", False),
        (HotRoute("GET", "/a/b", _data, exact=True), "GET", "/a/bc", False),
        (HotRoute("GET", "/a/b", _data, exact=True), "GET", "/a/b/c", False),
        (HotRoute("GET", "/a/b", _data, exact=True), "POST", "/a/b", False),
        (HotRoute("GET", "/a/b/", _data), "GET", "/a/b/x", True),
        (HotRoute("GET", "/a/b/", _data), "GET", "/a/b/", False),
        (HotRoute("GET", "/a/b/", _data), "GET", "/a/b/x/y", False),
        (HotRoute("GET", "/a/b/", _data), "GET", "/a/bx", False),
        (HotRoute("GET", "/a/b/", _data), "POST", "/a/b/x", False),
    ],
)
def test_hot_route_matching(route: HotRoute, method: str, path: str, hit: bool) -> None:
    assert route.matches(method, path) is hit


async def test_hot_path_answers_an_exact_route_in_its_dialect() -> None:
    async def fallback(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b"framework"})

    app = HotPath(fallback, [HotRoute("GET", "/x/y", _data, Dialect.KIE, exact=True)])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        hit = await http.get("/x/y?q=1")
        assert hit.json() == {"code": 200, "msg": "success", "data": "ok"}
        assert hit.headers["x-trace-id"]
        assert (await http.get("/x/y/z")).status_code == 418


async def test_openapi_documents_the_kie_routes(http: httpx.AsyncClient) -> None:
    document = (await http.get("/openapi.json")).json()
    record_info = document["paths"][RECORD]["get"]
    assert {p["name"] for p in record_info["parameters"]} == {"taskId", "wait"}
    assert "post" in document["paths"][CREATE]
    schemas = document["components"]["schemas"]
    assert set(schemas["KieRecord"]["required"]) == SEED_FIELDS
    assert set(schemas["KieError"]["required"]) == KIE_ERROR_KEYS


async def test_idempotency_key_returns_the_same_task(http: httpx.AsyncClient, api_key: str) -> None:
    body = {"model": "demo-echo", "input": {"prompt": "once"}}
    headers = {**bearer(api_key), "Idempotency-Key": "kie-1"}
    first = (await http.post(CREATE, json=body, headers=headers)).json()["data"]["taskId"]
    again = (await http.post(CREATE, json=body, headers=headers)).json()["data"]["taskId"]
    assert first == again
    other = await http.post(CREATE, json={**body, "input": {"prompt": "twice"}}, headers=headers)
    assert_kie_error(other, 409, "conflict")
