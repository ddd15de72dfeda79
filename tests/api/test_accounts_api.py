"""Credits, caps and the ledger as clients and admins see them, over HTTP (in process)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gengate.runtime import Gateway
from gengate.settings import ModelConfig, Settings

#: The admin key of the `settings` fixture.
ADMIN = {"Authorization": "Bearer gga_test_admin_key"}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def submit(
    http: httpx.AsyncClient,
    key: str,
    model: str,
    task_input: dict[str, Any],
    *,
    request_type: str = "async",
    dialect: str = "apixo",
) -> httpx.Response:
    """A submit in one of the three dialects."""
    if dialect == "kie":
        return await http.post(
            "/api/v1/jobs/createTask", json={"model": model, "input": task_input}, headers=auth(key)
        )
    if dialect == "xhuo":
        return await http.post(f"/api/v1/run/{model}", json=task_input, headers=auth(key))
    body = {"request_type": request_type, "input": task_input}
    return await http.post(f"/api/v1/generateTask/{model}", json=body, headers=auth(key))


async def usage(http: httpx.AsyncClient, key: str, **params: Any) -> dict[str, Any]:
    response = await http.get("/api/v1/account/usage", params=params, headers=auth(key))
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


@pytest.fixture
async def idle_gateway(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Gateway]]:
    """No workers (tasks stay pending), and a `tiny` model whose queue holds two tasks."""
    models = {"tiny": ModelConfig(provider="demo-echo", max_queue=2)}
    gateway = Gateway(settings.model_copy(update={"workers": 0, "models": models}))
    async with gateway.running():
        transport = httpx.ASGITransport(app=gateway.asgi())
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
            yield http, gateway


async def create_key(http: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    response = await http.post("/admin/v1/keys", json={"name": "acct", **fields}, headers=ADMIN)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def test_100_concurrent_submits_against_10_credits(
    idle_gateway: tuple[httpx.AsyncClient, Gateway],
) -> None:
    http, _gateway = idle_gateway
    key = (await create_key(http, credits=10))["key"]
    responses = await asyncio.gather(*(submit(http, key, "demo-echo", {"prompt": "x"}) for _ in range(100)))
    accepted = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    assert len(accepted) == 10
    assert len(refused) == 90
    for response in refused:
        body = response.json()
        assert response.status_code == 403
        assert body["code"] == 403
        assert body["error"]["code"] == "used_up"
        assert body["data"] is None
    listed = (await http.get("/api/v1/tasks", params={"limit": 200}, headers=auth(key))).json()["data"]
    accepted_ids = sorted(r.json()["data"]["taskId"] for r in accepted)
    assert sorted(t["taskId"] for t in listed["tasks"]) == accepted_ids
    account = (await http.get("/api/v1/account", headers=auth(key))).json()["data"]
    assert account["credits"] == 0
    ledger = await usage(http, key)
    assert ledger["credits"] == 0
    entries = ledger["entries"]
    assert [e["kind"] for e in entries].count("charge") == 10
    assert [e["kind"] for e in entries].count("topup") == 1
    assert sum(e["amount"] for e in entries) == 0
    assert {e["taskId"] for e in entries if e["kind"] == "charge"} == {t["taskId"] for t in listed["tasks"]}


async def test_the_price_is_per_output(idle_gateway: tuple[httpx.AsyncClient, Gateway]) -> None:
    http, _gateway = idle_gateway
    key = (await create_key(http, credits=5))["key"]
    response = await submit(http, key, "demo-image", {"prompt": "x", "n": 3})
    assert response.status_code == 200, response.text
    assert (await usage(http, key))["entries"][0]["amount"] == -3
    refused = await submit(http, key, "demo-image", {"prompt": "x", "n": 4, "width": 64})
    assert refused.json()["error"]["code"] == "used_up"
    assert "4 credits" in refused.json()["error"]["message"]
    assert "2 left" in refused.json()["error"]["message"]


async def test_a_content_violation_fails_the_task_and_refunds_it(http: httpx.AsyncClient) -> None:
    key = (await create_key(http, credits=3))["key"]
    response = await submit(
        http, key, "demo-echo", {"prompt": "x", "fail_code": "CONTENT_VIOLATION"}, request_type="sync"
    )
    data = response.json()["data"]
    assert data["state"] == "failed"
    assert data["failCode"] == "CONTENT_VIOLATION"
    entries = (await usage(http, key))["entries"]
    assert [(e["kind"], e["amount"], e["balance"]) for e in entries] == [
        ("refund", 1, 3),
        ("charge", -1, 2),
        ("topup", 3, 3),
    ]


async def test_a_success_is_paid_for(http: httpx.AsyncClient) -> None:
    key = (await create_key(http, credits=3))["key"]
    response = await submit(http, key, "demo-echo", {"prompt": "x"}, request_type="sync")
    assert response.json()["data"]["state"] == "success"
    assert (await usage(http, key))["credits"] == 2


async def test_max_concurrent_is_too_many_requests(idle_gateway: tuple[httpx.AsyncClient, Gateway]) -> None:
    http, _gateway = idle_gateway
    key = (await create_key(http, max_concurrent=2))["key"]
    first = await submit(http, key, "demo-echo", {"prompt": "x"})
    assert (await submit(http, key, "demo-echo", {"prompt": "x"})).status_code == 200
    refused = await submit(http, key, "demo-echo", {"prompt": "x"})
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_requests"
    assert int(refused.headers["retry-after"]) >= 1
    task_id = first.json()["data"]["taskId"]
    await http.post("/api/v1/cancelTask/demo-echo", params={"taskId": task_id}, headers=auth(key))
    assert (await submit(http, key, "demo-echo", {"prompt": "x"})).status_code == 200


async def test_a_full_queue_is_unavailable_and_free(idle_gateway: tuple[httpx.AsyncClient, Gateway]) -> None:
    http, _gateway = idle_gateway
    key = (await create_key(http, credits=10))["key"]
    for _ in range(2):
        assert (await submit(http, key, "tiny", {"prompt": "x"})).status_code == 200
    for route in ("apixo", "kie", "xhuo"):
        refused = await submit(http, key, "tiny", {"prompt": "x"}, dialect=route)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "unavailable"
        assert int(refused.headers["retry-after"]) >= 1
    assert (await usage(http, key))["credits"] == 8
    assert (await submit(http, key, "demo-echo", {"prompt": "x"})).status_code == 200


async def test_admin_sets_adds_and_reads_credits(http: httpx.AsyncClient) -> None:
    created = await create_key(http, credits=5, rate_limit="100/minute", max_concurrent=3)
    assert (created["credits"], created["rate_limit"], created["max_concurrent"]) == (5, "100/minute", 3)
    path = f"/admin/v1/keys/{created['id']}"
    patched = await http.patch(path, json={"add_credits": 7}, headers=ADMIN)
    assert patched.json()["data"]["credits"] == 12
    patched = await http.patch(path, json={"credits": 2, "rate_limit": None}, headers=ADMIN)
    assert (patched.json()["data"]["credits"], patched.json()["data"]["rate_limit"]) == (2, None)
    for body in (
        {"credits": 1, "add_credits": 1},
        {"add_credits": -3},
        {"credits": -1},
        {"rate_limit": "lots"},
        {"rate_limit": "0/minute"},
        {"max_concurrent": 0},
        {"credits": 2**60},
    ):
        refused = await http.patch(path, json=body, headers=ADMIN)
        assert refused.status_code == 400, (body, refused.text)
        assert refused.json()["error"]["code"] == "bad_request"
    assert (await http.patch(path, json={"credits": None}, headers=ADMIN)).json()["data"]["credits"] is None
    unlimited = await http.patch(path, json={"add_credits": 1, "name": "changed"}, headers=ADMIN)
    assert unlimited.status_code == 400  # nothing to add to: and the name stays as it was
    listed = (await http.get("/admin/v1/keys", headers=ADMIN)).json()["data"]["keys"]
    assert next(k for k in listed if k["id"] == created["id"])["name"] == "acct"
    missing = await http.patch("/admin/v1/keys/key_missing", json={"add_credits": 1}, headers=ADMIN)
    assert missing.status_code == 404
    entries = (await usage(http, created["key"]))["entries"]
    assert [(e["kind"], e["amount"], e["balance"]) for e in reversed(entries)] == [
        ("topup", 5, 5),
        ("topup", 7, 12),
        ("topup", -10, 2),
        ("topup", 0, None),
    ]


async def test_usage_pages_with_a_cursor(idle_gateway: tuple[httpx.AsyncClient, Gateway]) -> None:
    http, _gateway = idle_gateway
    key = (await create_key(http, credits=100))["key"]
    for _ in range(4):
        await submit(http, key, "demo-echo", {"prompt": "x"})
    first = await usage(http, key, limit=3)
    assert [e["balance"] for e in first["entries"]] == [96, 97, 98]
    rest = await usage(http, key, limit=3, cursor=first["nextCursor"])
    assert [e["balance"] for e in rest["entries"]] == [99, 100]
    assert rest["nextCursor"] is None
    for params in ({"limit": "0"}, {"limit": "x"}, {"limit": ""}, {"cursor": "abc"}, {"limit": "201"}):
        refused = await http.get("/api/v1/account/usage", params=params, headers=auth(key))
        assert refused.status_code == 400, params
