"""A task read or cancelled through another model's path (APIXO's `statusTask/{model}` and
`cancelTask/{model}`): its own key learns which model it belongs to; any other key still learns
nothing, not even that it exists."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gengate.runtime import Gateway

Idle = tuple[httpx.AsyncClient, str, Gateway]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def submit(http: httpx.AsyncClient, key: str) -> str:
    body = {"input": {"mode": "echo"}}
    response = await http.post("/api/v1/generateTask/demo-echo", json=body, headers=bearer(key))
    assert response.status_code == 200, response.text
    task_id: str = response.json()["data"]["taskId"]
    return task_id


async def call(http: httpx.AsyncClient, key: str, action: str, model: str, task_id: str) -> httpx.Response:
    if action == "cancel":
        return await http.post(f"/api/v1/cancelTask/{model}", params={"taskId": task_id}, headers=bearer(key))
    return await http.get(f"/api/v1/statusTask/{model}", params={"taskId": task_id}, headers=bearer(key))


def not_found(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 404, response.text
    body: dict[str, Any] = response.json()
    assert body["error"]["code"] == "task_not_found", body
    assert body["trace_id"] == response.headers["x-trace-id"]
    return body


@pytest.mark.parametrize("action", ["cancel", "status"])
async def test_own_task_through_another_model_says_which_model(idle: Idle, action: str) -> None:
    http, key, _gateway = idle
    task_id = await submit(http, key)
    body = not_found(await call(http, key, action, "demo-image", task_id))
    message = body["error"]["message"]
    assert f"Task '{task_id}' belongs to model 'demo-echo', not 'demo-image'" in message, message
    assert body["message"] == message
    # Nothing happened to it: still pending, and the right path still finds it.
    status = await call(http, key, "status", "demo-echo", task_id)
    assert status.json()["data"]["state"] == "pending", status.text


@pytest.mark.parametrize("action", ["cancel", "status"])
@pytest.mark.parametrize("model", ["demo-image", "demo-echo"])
async def test_another_keys_task_stays_not_found(idle: Idle, action: str, model: str) -> None:
    http, key, gateway = idle
    task_id = await submit(http, key)
    _other, other_key = await gateway.keys.create("other")
    body = not_found(await call(http, other_key, action, model, task_id))
    message = body["error"]["message"]
    assert message == f"Task '{task_id}' does not exist for this key.", message
    status = await call(http, key, "status", "demo-echo", task_id)
    assert status.json()["data"]["state"] == "pending", status.text
