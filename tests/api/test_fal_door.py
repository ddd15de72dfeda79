"""The fal queue door in process: submit, status with logs, result, cancel, the headers fal-client
sends, errors in fal's `detail` bodies, and one request read through every other door."""

from __future__ import annotations

import asyncio
import io
import time
from ipaddress import ip_network
from typing import Any

import httpx
import orjson
import pytest
from PIL import Image

from gengate.dialects import render_callback
from gengate.runtime import Gateway

APP = "/fal/gengate/demo-image"
HOOK = "http://127.0.0.1:9/hook"  # loopback, admitted per test; nothing listens on the discard port


def key(secret: str) -> dict[str, str]:
    """fal-client's own header."""
    return {"Authorization": f"Key {secret}"}


def assert_fal_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """fal's `detail` (which fal-client raises) and `error_type`, beside our `error` and `trace_id`."""
    body: dict[str, Any] = response.json()
    assert response.status_code == status, body
    assert body["error_type"] == body["error"]["code"] == code, body
    assert body["detail"] == body["error"]["message"]
    assert body["detail"]
    assert body["trace_id"] == response.headers["x-trace-id"]
    return body


async def submit(http: httpx.AsyncClient, secret: str, path: str = APP, **kwargs: Any) -> dict[str, Any]:
    response = await http.post(path, headers={**key(secret), **kwargs.pop("headers", {})}, **kwargs)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert response.headers["x-fal-request-id"] == body["request_id"]
    return body


async def completed(http: httpx.AsyncClient, secret: str, status_url: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        response = await http.get(status_url, params={"logs": "true"}, headers=key(secret))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] == "COMPLETED":
            return body
        assert time.monotonic() < deadline, body
        await _pause()


async def _pause() -> None:
    await asyncio.sleep(0.05)


async def test_submit_status_logs_and_result(http: httpx.AsyncClient, api_key: str) -> None:
    queued = await submit(http, api_key, json={"prompt": "a fal cat", "width": 96, "height": 64, "seed": 3})
    request_id = queued["request_id"]
    assert request_id.startswith("task_")
    base = f"http://gateway.test/fal/gengate/demo-image/requests/{request_id}"
    assert queued == {
        "status": "IN_QUEUE",
        "request_id": request_id,
        "response_url": base,
        "status_url": base + "/status",
        "cancel_url": base + "/cancel",
        "queue_position": queued["queue_position"],
    }
    done = await completed(http, api_key, queued["status_url"])
    assert done["metrics"]["inference_time"] >= 0
    assert "error" not in done
    messages = [entry["message"] for entry in done["logs"]]
    assert any("seed 3" in message for message in messages), messages
    assert all(set(entry) == {"message", "level", "source", "timestamp"} for entry in done["logs"])
    without = await http.get(queued["status_url"], headers=key(api_key))
    assert without.json()["logs"] is None
    result = await http.get(queued["response_url"], headers=key(api_key))
    assert result.status_code == 200, result.text
    body = result.json()
    assert body["seed"] == 3
    [image] = body["images"]
    assert (image["content_type"], image["width"], image["height"]) == ("image/png", 96, 64)
    png = await http.get(image["url"])
    assert png.status_code == 200
    assert Image.open(io.BytesIO(png.content)).size == (96, 64)
    assert image["file_size"] == len(png.content)


async def test_bearer_works_too_and_a_sub_path_picks_the_mode(http: httpx.AsyncClient, api_key: str) -> None:
    response = await http.post(
        APP + "/text-to-image", json={"prompt": "p"}, headers={"Authorization": f"Bearer {api_key}"}
    )
    assert response.status_code == 200, response.text
    unknown = await http.post(APP + "/image-to-video", json={"prompt": "p"}, headers=key(api_key))
    assert "text-to-image" in assert_fal_error(unknown, 404, "model_not_found")["detail"]


async def test_errors_are_fal_bodies(http: httpx.AsyncClient, api_key: str) -> None:
    assert_fal_error(await http.post(APP, json={"prompt": "p"}), 401, "no_token")
    assert_fal_error(await http.post(APP, json={"prompt": "p"}, headers=key("nope")), 401, "invalid_token")
    missing = await http.post("/fal/gengate/no-such-model", json={"prompt": "p"}, headers=key(api_key))
    assert_fal_error(missing, 404, "model_not_found")
    other_owner = await http.post("/fal/someone/demo-image", json={"prompt": "p"}, headers=key(api_key))
    assert_fal_error(other_owner, 404, "model_not_found")
    bad = await http.post(APP, json={"prompt": 5}, headers=key(api_key))
    assert "prompt" in assert_fal_error(bad, 400, "bad_request")["detail"]
    for header, value in (("X-Fal-Queue-Priority", "urgent"), ("X-Fal-Request-Timeout", "0.5")):
        refused = await http.post(APP, json={"prompt": "p"}, headers={**key(api_key), header: value})
        assert header in assert_fal_error(refused, 400, "bad_request")["detail"]
    absent = await http.get(APP + "/requests/task_nope/status", headers=key(api_key))
    assert_fal_error(absent, 404, "task_not_found")
    flag = await http.get(APP + "/requests/task_nope/status", params={"logs": "maybe"}, headers=key(api_key))
    assert flag.status_code in (400, 404)


async def test_another_key_or_app_never_sees_a_request(
    http: httpx.AsyncClient, api_key: str, gateway: Gateway
) -> None:
    queued = await submit(http, api_key, json={"prompt": "mine"})
    _other, secret = await gateway.keys.create("other")
    for url in (queued["status_url"], queued["response_url"]):
        assert_fal_error(await http.get(url, headers=key(secret)), 404, "task_not_found")
    assert_fal_error(await http.put(queued["cancel_url"], headers=key(secret)), 404, "task_not_found")
    elsewhere = queued["status_url"].replace("demo-image", "demo-echo")
    assert (
        "gengate/demo-image"
        in assert_fal_error(await http.get(elsewhere, headers=key(api_key)), 404, "task_not_found")["detail"]
    )


async def test_cross_door(http: httpx.AsyncClient, api_key: str) -> None:
    """A request made here reads through APIXO and KIE; a task made through APIXO reads here."""
    queued = await submit(http, api_key, json={"prompt": "both ways"})
    done = await completed(http, api_key, queued["status_url"])
    assert done["status"] == "COMPLETED"
    bearer = {"Authorization": f"Bearer {api_key}"}
    status = await http.get(
        "/api/v1/statusTask/demo-image", params={"taskId": queued["request_id"]}, headers=bearer
    )
    assert status.json()["data"]["state"] == "success"
    fal_url = (await http.get(queued["response_url"], headers=key(api_key))).json()["images"][0]["url"]
    assert orjson.loads(status.json()["data"]["resultJson"])["resultUrls"] == [fal_url]
    record = await http.get(
        "/api/v1/jobs/recordInfo", params={"taskId": queued["request_id"]}, headers=bearer
    )
    assert record.json()["data"]["param"] == '{"prompt":"both ways"}'
    made = await http.post(
        "/api/v1/generateTask/demo-echo", json={"input": {"data": {"x": 1}}}, headers=bearer
    )
    task_id = made.json()["data"]["taskId"]
    base = f"/fal/gengate/demo-echo/requests/{task_id}"
    await completed(http, api_key, base + "/status")
    result = (await http.get(base, headers=key(api_key))).json()
    [file] = result["files"]
    assert file["content_type"] == "application/json"
    assert orjson.loads((await http.get(file["url"])).content)["data"] == {"x": 1}


async def test_cancel_priority_and_queue_timeout(idle: tuple[httpx.AsyncClient, str, Gateway]) -> None:
    http, secret, gateway = idle
    first = await submit(http, secret, json={"prompt": "1"})
    low = await submit(http, secret, json={"prompt": "2"}, headers={"X-Fal-Queue-Priority": "low"})
    normal = await submit(http, secret, json={"prompt": "3"}, headers={"X-Fal-Queue-Priority": "normal"})
    assert (first["queue_position"], low["queue_position"], normal["queue_position"]) == (0, 1, 1)
    status = (await http.get(low["status_url"], headers=key(secret))).json()
    assert (status["status"], status["queue_position"]) == ("IN_QUEUE", 2)  # the later normal one is ahead
    early = await http.get(first["response_url"], headers=key(secret))
    assert assert_fal_error(early, 400, "bad_request")["status"] == "IN_QUEUE"

    cancel = await http.put(first["cancel_url"], headers=key(secret))
    assert (cancel.status_code, cancel.json()) == (202, {"status": "CANCELLATION_REQUESTED"})
    ended = (await http.get(first["status_url"], headers=key(secret))).json()
    assert (ended["status"], ended["error_type"]) == ("COMPLETED", "CANCELED")
    again = await http.put(first["cancel_url"], headers=key(secret))
    assert assert_fal_error(again, 400, "bad_request")["status"] == "ALREADY_COMPLETED"
    assert_fal_error(await http.get(first["response_url"], headers=key(secret)), 400, "CANCELED")

    timed = await submit(http, secret, json={"prompt": "t"}, headers={"X-Fal-Request-Timeout": "1.2"})
    dropped = await completed(http, secret, timed["status_url"])
    assert dropped["error_type"] == "CANCELED"
    task = await gateway.tasks.store.get_task(timed["request_id"])
    assert task is not None
    assert task.priority == 0
    low_task = await gateway.tasks.store.get_task(low["request_id"])
    assert low_task is not None
    assert low_task.priority == -1


async def test_webhook(
    http: httpx.AsyncClient, api_key: str, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gateway.tasks.callback_policy, "allowed", (ip_network("127.0.0.0/8"),))
    queued = await submit(http, api_key, params={"fal_webhook": HOOK}, json={"prompt": "hook"})
    await completed(http, api_key, queued["status_url"])
    task = await gateway.tasks.store.get_task(queued["request_id"])
    assert task is not None
    assert (task.dialect, task.request_type, task.callback_url) == ("fal", "callback", HOOK)
    sent = orjson.loads(render_callback(task.dialect, task, gateway.links))
    assert (sent["request_id"], sent["status"]) == (task.id, "OK")
    result = (await http.get(queued["response_url"], headers=key(api_key))).json()
    assert sent["payload"] == result
    refused = await http.post(
        APP, params={"fal_webhook": "http://10.0.0.1/x"}, json={"prompt": "p"}, headers=key(api_key)
    )
    assert_fal_error(refused, 400, "bad_request")


async def test_status_stream(http: httpx.AsyncClient, api_key: str) -> None:
    queued = await submit(http, api_key, json={"prompt": "stream", "duration_ms": 200})
    events = []
    async with http.stream("GET", queued["status_url"] + "/stream", headers=key(api_key)) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                events.append(orjson.loads(line[6:]))
    assert events[-1]["status"] == "COMPLETED"
    assert all(event["status"] in {"IN_QUEUE", "IN_PROGRESS", "COMPLETED"} for event in events)


@pytest.mark.parametrize("webhook", ["", "  "])
async def test_an_empty_webhook_is_refused(http: httpx.AsyncClient, api_key: str, webhook: str) -> None:
    """`?fal_webhook=` with no URL is a mistake to report, not a request without a webhook."""
    refused = await http.post(
        APP, params={"fal_webhook": webhook}, json={"prompt": "p"}, headers=key(api_key)
    )
    assert_fal_error(refused, 400, "bad_request")
