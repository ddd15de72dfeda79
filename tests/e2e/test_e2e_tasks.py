"""Tasks through a real server: the seed's happy path, state bodies, results, failures, sync."""

from __future__ import annotations

import io
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from PIL import Image

pytestmark = pytest.mark.e2e

SEED_BODY: dict[str, Any] = {
    "request_type": "async",
    "input": {"mode": "text-to-image", "prompt": "A beautiful sunset over mountains"},
}
TASK_ID = re.compile(r"^task_[A-Za-z0-9_-]{22,}$")
EXTRAS = {"model", "progress", "queuePosition"}
PENDING_FIELDS = {"taskId", "state", "createTime"}
SUCCESS_FIELDS = {"taskId", "state", "resultJson", "costTime", "createTime", "completeTime"}
FAILED_FIELDS = {"taskId", "state", "failCode", "failMsg", "createTime", "completeTime"}


def check_fields(data: dict[str, Any], required: set[str], model: str) -> None:
    """Exactly the seed's fields for the state, plus only the allowed extras."""
    keys = set(data)
    assert required <= keys, f"missing {required - keys}: {data}"
    assert keys - required <= EXTRAS, f"unexpected {keys - required - EXTRAS}: {data}"
    assert TASK_ID.match(data["taskId"]), data
    assert isinstance(data["createTime"], int), data
    if "model" in data:
        assert data["model"] == model, data
    if "progress" in data:
        assert isinstance(data["progress"], int | float), data
        assert 0 <= data["progress"] <= 100, data


def check_success(data: dict[str, Any], model: str) -> list[str]:
    """A success body; returns its result URLs."""
    check_fields(data, SUCCESS_FIELDS, model)
    assert data["state"] == "success"
    assert isinstance(data["costTime"], int), data
    assert isinstance(data["completeTime"], int), data
    assert data["costTime"] >= 0, data
    assert data["createTime"] <= data["completeTime"], data
    assert data["costTime"] <= data["completeTime"] - data["createTime"], data
    assert isinstance(data["resultJson"], str), data
    result = json.loads(data["resultJson"])
    assert set(result) == {"resultUrls"}, result
    urls: list[str] = result["resultUrls"]
    assert isinstance(urls, list), result
    assert all(isinstance(url, str) and url for url in urls), result
    return urls


def png_of(gengate_server: Any, url: str) -> tuple[bytes, Image.Image]:
    response = gengate_server.http.get(url)  # signed URL: no API key needed
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    image.load()
    assert image.format == "PNG"
    return response.content, image


def test_seed_happy_path(gengate_server: Any) -> None:
    key = gengate_server.create_key("happy")["key"]
    response = gengate_server.http.post(
        "/api/v1/generateTask/demo-image", json=SEED_BODY, headers=gengate_server.auth(key)
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body == {"code": 200, "message": "success", "data": {"taskId": body["data"]["taskId"]}}
    task_id = body["data"]["taskId"]
    assert TASK_ID.match(task_id), task_id

    data = gengate_server.wait_task(key, "demo-image", task_id)
    assert data["taskId"] == task_id
    urls = check_success(data, "demo-image")
    assert len(urls) == 1
    assert urls[0].startswith(gengate_server.base_url + "/files/")
    _, image = png_of(gengate_server, urls[0])
    assert image.size == (512, 512)  # the schema's default


def test_requested_size_and_n(gengate_server: Any, api_key: str) -> None:
    task_input = {"mode": "text-to-image", "prompt": "two small ones", "width": 96, "height": 64, "n": 2}
    task_id = gengate_server.submit_ok(api_key, "demo-image", task_input)
    urls = check_success(gengate_server.wait_task(api_key, "demo-image", task_id), "demo-image")
    assert len(urls) == 2
    assert len(set(urls)) == 2
    pngs = []
    for url in urls:
        content, image = png_of(gengate_server, url)
        assert image.size == (96, 64)
        pngs.append(content)
    assert pngs[0] != pngs[1]  # seed, seed + 1


def test_processing_body_has_only_pending_fields(gengate_server: Any, api_key: str) -> None:
    task_input = {"mode": "text-to-image", "prompt": "slow", "width": 32, "height": 32, "duration_ms": 1200}
    task_id = gengate_server.submit_ok(api_key, "demo-image", task_input)
    seen: list[dict[str, Any]] = []

    def record(data: dict[str, Any]) -> bool:
        seen.append(data)
        return data["state"] in {"success", "failed"}

    final = gengate_server.wait_task(api_key, "demo-image", task_id, until=record)
    check_success(final, "demo-image")
    running = [data for data in seen if data["state"] in {"pending", "processing"}]
    assert any(data["state"] == "processing" for data in running), seen
    for data in running:
        check_fields(data, PENDING_FIELDS, "demo-image")
        assert data["createTime"] == final["createTime"]
    progress = [data["progress"] for data in running if "progress" in data]
    assert progress == sorted(progress), progress


def test_same_seed_same_bytes(gengate_server: Any, api_key: str) -> None:
    def one(seed: int) -> str:
        task_input = {
            "mode": "text-to-image",
            "prompt": "determinism",
            "width": 80,
            "height": 48,
            "seed": seed,
        }
        task_id: str = gengate_server.submit_ok(api_key, "demo-image", task_input)
        return task_id

    ids = [one(7), one(7), one(8)]
    pngs = []
    for task_id in ids:
        urls = check_success(gengate_server.wait_task(api_key, "demo-image", task_id), "demo-image")
        pngs.append(png_of(gengate_server, urls[0])[0])
    assert pngs[0] == pngs[1]
    assert pngs[0] != pngs[2]


def test_requested_failure(gengate_server: Any, api_key: str) -> None:
    task_input = {"mode": "text-to-image", "prompt": "fail me", "fail_code": "CONTENT_VIOLATION"}
    task_id = gengate_server.submit_ok(api_key, "demo-image", task_input)
    data = gengate_server.wait_task(api_key, "demo-image", task_id)
    check_fields(data, FAILED_FIELDS, "demo-image")
    assert data["state"] == "failed"
    assert data["failCode"] == "CONTENT_VIOLATION"
    assert isinstance(data["failMsg"], str)
    assert data["failMsg"]
    assert isinstance(data["completeTime"], int)
    assert data["createTime"] <= data["completeTime"]
    assert "costTime" not in data
    assert "resultJson" not in data


def test_model_timeout(gengate_server: Any, api_key: str) -> None:
    """`slow` (demo-echo, timeout_s 0.5) asked to work 3 s fails TIMEOUT after about 0.5 s."""
    started = time.monotonic()
    task_id = gengate_server.submit_ok(api_key, "slow", {"mode": "echo", "duration_ms": 3000})
    data = gengate_server.wait_task(api_key, "slow", task_id, timeout=10)
    elapsed = time.monotonic() - started
    check_fields(data, FAILED_FIELDS, "slow")
    assert data["state"] == "failed"
    assert data["failCode"] == "TIMEOUT"
    assert data["failMsg"]
    assert "costTime" not in data
    assert "resultJson" not in data
    assert elapsed < 2.5, elapsed
    assert data["completeTime"] - data["createTime"] < 2500, data


def test_echo_result_is_the_input(gengate_server: Any, api_key: str) -> None:
    payload = {"nested": [1, "two", {"three": None}], "unicode": "é✓"}
    task_id = gengate_server.submit_ok(
        api_key, "demo-echo", {"mode": "echo", "prompt": "hi", "data": payload}
    )
    urls = check_success(gengate_server.wait_task(api_key, "demo-echo", task_id), "demo-echo")
    assert len(urls) == 1
    response = gengate_server.http.get(urls[0])
    assert response.status_code == 200
    echoed = response.json()
    assert echoed["data"] == payload
    assert echoed["prompt"] == "hi"


def test_sync_returns_the_success_body(gengate_server: Any, api_key: str) -> None:
    task_input = {"mode": "text-to-image", "prompt": "sync", "width": 32, "height": 32, "duration_ms": 200}
    response = gengate_server.submit(api_key, "demo-image", task_input, request_type="sync")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"code", "message", "data"}
    assert body["code"] == 200
    assert body["message"] == "success"
    urls = check_success(body["data"], "demo-image")
    assert len(urls) == 1
    assert png_of(gengate_server, urls[0])[1].size == (32, 32)
    # The same task, read back by status, says the same.
    again = gengate_server.status_data(api_key, "demo-image", body["data"]["taskId"])
    assert again["resultJson"] == body["data"]["resultJson"]
    assert again["completeTime"] == body["data"]["completeTime"]


def test_sync_failure_returns_the_failed_body(gengate_server: Any, api_key: str) -> None:
    response = gengate_server.submit(
        api_key, "demo-echo", {"mode": "echo", "fail_code": "PROVIDER_ERROR"}, request_type="sync"
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    check_fields(data, FAILED_FIELDS, "demo-echo")
    assert data["state"] == "failed"
    assert data["failCode"] == "PROVIDER_ERROR"


def test_sync_wait_runs_out_then_the_task_goes_on(short_server: Any) -> None:
    key = short_server.create_key("sync")["key"]
    started = time.monotonic()
    response = short_server.submit(
        key, "demo-echo", {"mode": "echo", "duration_ms": 3000}, request_type="sync"
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert 0.8 <= elapsed < 2.5, elapsed
    assert data["state"] in {"pending", "processing"}, data
    check_fields(data, PENDING_FIELDS, "demo-echo")
    final = short_server.wait_task(key, "demo-echo", data["taskId"], timeout=15)
    check_success(final, "demo-echo")
    assert final["createTime"] == data["createTime"]
    assert final["completeTime"] - final["createTime"] >= 3000, final


def test_concurrent_submits_all_finish(gengate_server: Any, api_key: str) -> None:
    """A burst of submits from several threads: unique ids, every task done, each its own input."""

    def submit(i: int) -> str:
        task_id: str = gengate_server.submit_ok(api_key, "demo-echo", {"mode": "echo", "data": {"i": i}})
        return task_id

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(submit, range(40)))
    assert len(set(ids)) == len(ids)
    for i, task_id in enumerate(ids):
        urls = check_success(gengate_server.wait_task(api_key, "demo-echo", task_id), "demo-echo")
        assert gengate_server.http.get(urls[0]).json()["data"] == {"i": i}


def test_status_query_is_percent_decoded(gengate_server: Any, api_key: str) -> None:
    task_id = gengate_server.submit_ok(api_key, "demo-echo", {"mode": "echo"})
    encoded = "".join(f"%{ord(char):02X}" for char in task_id)
    auth = gengate_server.auth(api_key)
    for query in (f"taskId={encoded}", f"other=1&taskId={task_id}", f"taskId={encoded}&x=%20"):
        response = gengate_server.http.get(f"/api/v1/statusTask/demo-echo?{query}", headers=auth)
        assert response.status_code == 200, (query, response.text)
        assert response.json()["data"]["taskId"] == task_id
