"""The OpenAI Images door in process: `POST /v1/images/generations` and `/v1/images/edits`
answer the images response or OpenAI's error body with the status the official client maps to
its exceptions; a task made here is one task, read through the other doors."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from PIL import Image

from gengate.api.app import build_app
from gengate.runtime import Gateway

GENERATIONS = "/v1/images/generations"
EDITS = "/v1/images/edits"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_openai_error(
    response: httpx.Response, status: int, code: str, param: str | None = None
) -> dict[str, Any]:
    """`{"error": {message, type, param, code}, "trace_id"}`, the trace id as the header's."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, body
    assert (error["code"], error["param"]) == (code, param), body
    assert isinstance(error["message"], str)
    assert error["message"]
    assert isinstance(error["type"], str)
    assert body["trace_id"] == response.headers["x-trace-id"]
    return body


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 40)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
async def short_wait(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    """The same gateway behind an app whose synchronous requests wait at most 0.3 s."""
    app = build_app(dataclasses.replace(gateway.api_context(), sync_wait_s=0.3))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway.test"
    ) as http:
        yield http


async def status_data(
    http: httpx.AsyncClient, key: str, model: str, task_id: str, wait: float = 0
) -> dict[str, Any]:
    params: dict[str, Any] = {"taskId": task_id, "wait": wait} if wait else {"taskId": task_id}
    response = await http.get(f"/api/v1/statusTask/{model}", params=params, headers=bearer(key))
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def generate(http: httpx.AsyncClient, key: str, **fields: Any) -> httpx.Response:
    return await http.post(
        GENERATIONS, json={"model": "demo-image", "prompt": "a fox", **fields}, headers=bearer(key)
    )


async def test_generate_answers_urls_of_pictures_of_the_size_asked(
    http: httpx.AsyncClient, api_key: str, gateway: Gateway
) -> None:
    response = await generate(http, api_key, size="64x48", n=2, quality="high", style="vivid", user="u1")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"created", "data", "size", "output_format"}
    assert (body["size"], body["output_format"]) == ("64x48", "png")
    assert abs(body["created"] - time.time()) < 60
    assert len(body["data"]) == 2
    for item in body["data"]:
        assert set(item) == {"url"}
        download = await http.get(httpx.URL(item["url"]).raw_path.decode())
        assert download.status_code == 200
        assert Image.open(io.BytesIO(download.content)).size == (64, 48)
    task_id = response.headers["x-gengate-task-id"]
    task = await gateway.store.get_task(task_id)
    assert task is not None
    assert (task.dialect, task.request_type, task.mode) == ("openai", "sync", "text-to-image")
    assert task.trace_id == response.headers["x-trace-id"]
    assert task.request["quality"] == "high"  # the client's body, kept as it came
    assert (task.input["width"], task.input["height"], task.input["n"]) == (64, 48, 2)
    # One task whatever door: APIXO and KIE read it.
    data = await status_data(http, api_key, "demo-image", task_id)
    assert data["state"] == "success"
    assert len(json.loads(data["resultJson"])["resultUrls"]) == 2
    record = await http.get("/api/v1/jobs/recordInfo", params={"taskId": task_id}, headers=bearer(api_key))
    assert record.json()["data"]["state"] == "success"


async def test_a_null_response_format_is_the_default_url(http: httpx.AsyncClient, api_key: str) -> None:
    """As OpenAI's API takes it (its SDK sends null for `response_format=None`); an empty string
    is refused (above)."""
    response = await generate(http, api_key, size="32x40", response_format=None)
    assert response.status_code == 200, response.text
    [item] = response.json()["data"]
    assert set(item) == {"url"}


async def test_b64_json_carries_the_pictures_themselves(http: httpx.AsyncClient, api_key: str) -> None:
    response = await generate(http, api_key, size="32x40", response_format="b64_json", seed=3)
    assert response.status_code == 200, response.text
    [item] = response.json()["data"]
    assert set(item) == {"b64_json"}
    picture = base64.b64decode(item["b64_json"])
    assert Image.open(io.BytesIO(picture)).size == (32, 40)
    # The same seed through the url form: the same bytes.
    again = await generate(http, api_key, size="32x40", seed=3)
    download = await http.get(httpx.URL(again.json()["data"][0]["url"]).raw_path.decode())
    assert download.content == picture


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"size": "big"}, "size"),
        ({"size": "4096x4096"}, "size"),  # past the model's 2048: its validation, named as `size`
        ({"n": 5}, "n"),  # demo-image makes at most 4
        ({"n": 11}, "n"),
        ({"output_format": "jpeg"}, "output_format"),
        ({"background": "transparent"}, "background"),
        ({"response_format": "png"}, "response_format"),
        ({"response_format": ""}, "response_format"),
        ({"prompt": ""}, "prompt"),
        ({"frame_count": 3}, "frame_count"),
        ({"model": None}, "model"),
        ({"model": "demo-echo"}, "model"),  # no text-to-image mode
    ],
)
async def test_what_the_model_cannot_do_is_400_naming_the_field(
    http: httpx.AsyncClient, api_key: str, fields: dict[str, Any], param: str
) -> None:
    body = assert_openai_error(await generate(http, api_key, **fields), 400, "bad_request", param)
    assert body["error"]["type"] == "invalid_request_error"


async def test_unknown_model_is_404_and_bad_keys_401(http: httpx.AsyncClient, api_key: str) -> None:
    missing = assert_openai_error(
        await generate(http, api_key, model="dall-e-9"), 404, "model_not_found", "model"
    )
    assert "dall-e-9" in missing["error"]["message"]
    assert_openai_error(await generate(http, "sk-wrong"), 401, "invalid_token")
    assert_openai_error(await http.post(GENERATIONS, json={}), 401, "no_token")
    assert_openai_error(
        await http.post(GENERATIONS, content=b"{", headers=bearer(api_key)), 400, "bad_request"
    )


async def test_no_credits_is_429_insufficient_quota_not_to_be_retried(
    http: httpx.AsyncClient, gateway: Gateway
) -> None:
    _, key = await gateway.keys.create("poor", credits=0)
    response = await generate(http, key)
    body = assert_openai_error(response, 429, "used_up")
    assert body["error"]["type"] == "insufficient_quota"
    assert response.headers["x-should-retry"] == "false"


async def test_past_the_sync_wait_504_names_the_task_which_goes_on(
    short_wait: httpx.AsyncClient, api_key: str
) -> None:
    http = short_wait
    response = await generate(http, api_key, size="16x16", duration_ms=1500)
    body = assert_openai_error(response, 504, "timeout")
    task_id = body["task_id"]
    assert task_id in body["error"]["message"]
    assert response.headers["x-gengate-task-id"] == task_id
    assert response.headers["x-should-retry"] == "false"  # a retry would be a second task
    deadline = time.monotonic() + 20
    while (data := await status_data(http, api_key, "demo-image", task_id, wait=5))["state"] != "success":
        assert time.monotonic() < deadline, data


@pytest.mark.parametrize(
    ("fail_code", "status", "retry"),
    [("CONTENT_VIOLATION", 400, "false"), ("CANCELED", 409, "false"), ("PROVIDER_ERROR", 500, None)],
)
async def test_a_failed_task_is_its_fail_code(
    http: httpx.AsyncClient, api_key: str, fail_code: str, status: int, retry: str | None
) -> None:
    response = await generate(http, api_key, size="16x16", fail_code=fail_code)
    body = assert_openai_error(response, status, fail_code)
    assert response.headers["x-gengate-task-id"] == body["task_id"]
    assert response.headers.get("x-should-retry") == retry
    data = await status_data(http, api_key, "demo-image", body["task_id"])
    assert (data["state"], data["failCode"]) == ("failed", fail_code)


async def test_the_same_idempotency_key_answers_the_same_task(http: httpx.AsyncClient, api_key: str) -> None:
    headers = {**bearer(api_key), "Idempotency-Key": "one-fox"}
    body = {"model": "demo-image", "prompt": "a fox", "size": "16x16"}
    first = await http.post(GENERATIONS, json=body, headers=headers)
    second = await http.post(GENERATIONS, json=body, headers=headers)
    assert first.headers["x-gengate-task-id"] == second.headers["x-gengate-task-id"]
    other = await http.post(GENERATIONS, json={**body, "size": "32x32"}, headers=headers)
    assert_openai_error(other, 409, "conflict")


async def test_edits_take_multipart_pictures_only(http: httpx.AsyncClient, api_key: str) -> None:
    fields = {"model": "demo-image", "prompt": "make it blue"}
    as_json = await http.post(EDITS, json=fields, headers=bearer(api_key))
    assert_openai_error(as_json, 400, "bad_request")
    files = {"image": ("fox.png", b"not a picture", "image/png")}
    not_picture = await http.post(EDITS, data=fields, files=files, headers=bearer(api_key))
    assert_openai_error(not_picture, 400, "bad_request", "image")
    files = {"image": ("fox.png", png(16, 16), "image/png")}
    no_mode = await http.post(EDITS, data=fields, files=files, headers=bearer(api_key))
    assert_openai_error(no_mode, 400, "bad_request", "model")  # demo-image has no image-to-image
    no_image = await http.post(
        EDITS, data=fields, files={"mask": ("m.png", png(16, 16))}, headers=bearer(api_key)
    )
    assert_openai_error(no_image, 400, "bad_request", "image")
    unknown = await http.post(EDITS, data={**fields, "model": "x"}, files=files, headers=bearer(api_key))
    assert_openai_error(unknown, 404, "model_not_found", "model")


async def test_an_unknown_route_or_method_answers_in_openai_form(
    http: httpx.AsyncClient, api_key: str
) -> None:
    assert_openai_error(await http.post("/v1/images/variations", headers=bearer(api_key)), 404, "no_api")
    assert_openai_error(await http.get(GENERATIONS, headers=bearer(api_key)), 405, "no_api")
    too_big = await http.post(GENERATIONS, content=b"x" * (2 << 20), headers=bearer(api_key))
    assert_openai_error(too_big, 413, "payload_too_large")
