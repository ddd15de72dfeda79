"""Listing, the catalogue, idempotency, queue positions and the event stream, in process."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest

from gengate.domain.keys import KeyChanges
from gengate.runtime import Gateway


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


ECHO = {"request_type": "async", "input": {"mode": "echo", "prompt": "hi"}}


async def submit(http: httpx.AsyncClient, key: str, body: Any = ECHO, **headers: str) -> httpx.Response:
    return await http.post("/api/v1/generateTask/demo-echo", json=body, headers={**bearer(key), **headers})


async def test_list_pages_newest_first_with_filters(idle: tuple[httpx.AsyncClient, str, Gateway]) -> None:
    http, _secret, gateway = idle
    _k, key = await gateway.keys.create("lister")
    _o, other = await gateway.keys.create("other")
    ids = [(await submit(http, key)).json()["data"]["taskId"] for _ in range(5)]
    await submit(http, other)
    await gateway.store.cancel(ids[0])

    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await http.get("/api/v1/tasks", params=params, headers=bearer(key))).json()["data"]
        seen += [t["taskId"] for t in page["tasks"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    # Newest first; tasks made in the same millisecond follow by id, as the store orders them.
    made = {task_id: (await gateway.store.get_task(task_id)).create_time for task_id in ids}  # type: ignore[union-attr]
    assert seen == sorted(ids, key=lambda task_id: (made[task_id], task_id), reverse=True)

    failed = (await http.get("/api/v1/tasks", params={"state": "failed"}, headers=bearer(key))).json()
    assert [t["taskId"] for t in failed["data"]["tasks"]] == [ids[0]]
    none = await http.get("/api/v1/tasks", params={"model": "demo-image"}, headers=bearer(key))
    assert none.json()["data"]["tasks"] == []


@pytest.mark.parametrize(
    "params", [{"state": "done"}, {"limit": "0"}, {"limit": "x"}, {"cursor": "%%%"}, {"since": "1.5"}]
)
async def test_list_rejects_bad_parameters(
    http: httpx.AsyncClient, api_key: str, params: dict[str, str]
) -> None:
    response = await http.get("/api/v1/tasks", params=params, headers=bearer(api_key))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


async def test_models_lists_what_the_key_may_use(http: httpx.AsyncClient, gateway: Gateway) -> None:
    _k, everything = await gateway.keys.create("all")
    _r, restricted = await gateway.keys.create("echo only", models=["demo-echo"])
    models = (await http.get("/api/v1/models", headers=bearer(everything))).json()["data"]["models"]
    by_id = {m["id"]: m for m in models}
    assert set(by_id) == {"demo-image", "demo-echo"}
    image = by_id["demo-image"]
    assert image["modes"] == ["text-to-image"]
    schema = image["inputSchema"]["text-to-image"]
    assert "prompt" in str(schema)
    assert image["price"] == 1
    only = (await http.get("/api/v1/models", headers=bearer(restricted))).json()["data"]["models"]
    assert [m["id"] for m in only] == ["demo-echo"]


async def test_idempotency_key_returns_the_same_task(idle: tuple[httpx.AsyncClient, str, Gateway]) -> None:
    http, _secret, gateway = idle
    _k, key = await gateway.keys.create("idem")
    first = await submit(http, key, **{"Idempotency-Key": "order-1"})
    again = await submit(http, key, **{"Idempotency-Key": "order-1"})
    assert first.json()["data"]["taskId"] == again.json()["data"]["taskId"]
    reordered = {"input": {"prompt": "hi", "mode": "echo"}, "request_type": "async"}
    assert (await submit(http, key, reordered, **{"Idempotency-Key": "order-1"})).json() == first.json()
    other = await submit(http, key, **{"Idempotency-Key": "order-2"})
    assert other.json()["data"]["taskId"] != first.json()["data"]["taskId"]


async def test_idempotency_key_with_another_body_is_a_conflict(
    idle: tuple[httpx.AsyncClient, str, Gateway],
) -> None:
    http, _secret, gateway = idle
    _k, key = await gateway.keys.create("idem")
    await submit(http, key, **{"Idempotency-Key": "order-1"})
    changed = {"request_type": "async", "input": {"mode": "echo", "prompt": "other"}}
    response = await submit(http, key, changed, **{"Idempotency-Key": "order-1"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"


async def test_idempotency_keys_are_per_api_key(idle: tuple[httpx.AsyncClient, str, Gateway]) -> None:
    http, _secret, gateway = idle
    _a, first = await gateway.keys.create("a")
    _b, second = await gateway.keys.create("b")
    one = await submit(http, first, **{"Idempotency-Key": "same"})
    two = await submit(http, second, **{"Idempotency-Key": "same"})
    assert one.json()["data"]["taskId"] != two.json()["data"]["taskId"]


async def test_concurrent_duplicates_make_one_task(idle: tuple[httpx.AsyncClient, str, Gateway]) -> None:
    http, _secret, gateway = idle
    _k, key = await gateway.keys.create("idem")
    responses = await asyncio.gather(*(submit(http, key, **{"Idempotency-Key": "burst"}) for _ in range(30)))
    assert {r.json()["data"]["taskId"] for r in responses} == {responses[0].json()["data"]["taskId"]}
    listed = (await http.get("/api/v1/tasks", headers=bearer(key))).json()["data"]["tasks"]
    assert len(listed) == 1


@pytest.mark.parametrize("value", ["", "x" * 256, "bad\x01key"])
async def test_bad_idempotency_key(http: httpx.AsyncClient, api_key: str, value: str) -> None:
    transport_safe = value.encode("latin-1")
    response = await http.post(
        "/api/v1/generateTask/demo-echo",
        content=orjson.dumps(ECHO),
        headers=[(b"authorization", f"Bearer {api_key}".encode()), (b"idempotency-key", transport_safe)],
    )
    assert response.status_code == 400


async def test_queue_position_while_pending(idle: tuple[httpx.AsyncClient, str, Gateway]) -> None:
    http, _secret, gateway = idle
    _k, key = await gateway.keys.create("queue")
    ids = [(await submit(http, key)).json()["data"]["taskId"] for _ in range(3)]
    positions = []
    for task_id in ids:
        response = await http.get(
            "/api/v1/statusTask/demo-echo", params={"taskId": task_id}, headers=bearer(key)
        )
        positions.append(response.json()["data"]["queuePosition"])
    assert positions == [0, 1, 2]


async def read_events(response: httpx.Response) -> list[dict[str, Any]]:
    events = []
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            events.append(orjson.loads(line[len("data: ") :]))
    return events


async def test_events_stream_each_change_and_end(http: httpx.AsyncClient, api_key: str) -> None:
    body = {"request_type": "async", "input": {"mode": "echo", "duration_ms": 500}}
    task_id = (await submit(http, api_key, body)).json()["data"]["taskId"]
    async with http.stream("GET", f"/api/v1/tasks/{task_id}/events", headers=bearer(api_key)) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = await asyncio.wait_for(read_events(response), 10)
    states = [e["state"] for e in events]
    assert states[-1] == "success"
    assert states.count("success") == 1
    progress = [e.get("progress", 0) for e in events]
    assert progress == sorted(progress)
    assert len(events) >= 3


async def test_events_with_a_browser_token(http: httpx.AsyncClient, api_key: str, gateway: Gateway) -> None:
    task_id = (await submit(http, api_key)).json()["data"]["taskId"]
    minted = (await http.post(f"/api/v1/tasks/{task_id}/eventsToken", headers=bearer(api_key))).json()["data"]
    async with http.stream("GET", minted["path"]) as response:
        assert response.status_code == 200
        events = await asyncio.wait_for(read_events(response), 10)
    assert events[-1]["state"] == "success"

    other_task = (await submit(http, api_key)).json()["data"]["taskId"]
    wrong_task = await http.get(f"/api/v1/tasks/{other_task}/events", params={"token": minted["token"]})
    assert wrong_task.status_code == 401
    tampered = await http.get(f"/api/v1/tasks/{task_id}/events", params={"token": minted["token"] + "x"})
    assert tampered.status_code == 401
    key_id = minted["token"].split(".")[0]
    await gateway.keys.update(key_id, KeyChanges(disabled=True))
    disabled = await http.get(f"/api/v1/tasks/{task_id}/events", params={"token": minted["token"]})
    assert disabled.status_code == 403
