"""The API on PostgreSQL, in process: one gateway serving, another running the workers, both on
one database and one data folder, as two processes of a cluster would be."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gengate.runtime import Gateway
from gengate.settings import Settings


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class Pair:
    """An API-only gateway and a worker gateway sharing PostgreSQL."""

    def __init__(self, api: Gateway, worker: Gateway, http: httpx.AsyncClient, key: str) -> None:
        self.api, self.worker, self.http, self.key = api, worker, http, key

    async def submit(self, model: str = "demo-echo", **input_: Any) -> str:
        response = await self.http.post(
            f"/api/v1/generateTask/{model}", json={"input": input_}, headers=bearer(self.key)
        )
        assert response.status_code == 200, response.text
        task_id: str = response.json()["data"]["taskId"]
        return task_id

    async def status(self, task_id: str, model: str = "demo-echo", **params: Any) -> dict[str, Any]:
        response = await self.http.get(
            f"/api/v1/statusTask/{model}", params={"taskId": task_id, **params}, headers=bearer(self.key)
        )
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        return data


@pytest.fixture
async def pair(settings: Settings, pg_url: str) -> AsyncIterator[Pair]:
    shared = settings.model_copy(update={"database_url": pg_url})
    api = Gateway(shared.model_copy(update={"workers": 0}))
    worker = Gateway(shared.model_copy(update={"workers": 4}))
    async with api.running(), worker.running():
        _key, secret = await api.keys.create("pg")
        transport = httpx.ASGITransport(app=api.asgi())
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
            yield Pair(api, worker, http, secret)


async def test_a_task_submitted_to_one_process_runs_in_another(pair: Pair) -> None:
    task_id = await pair.submit("demo-image", prompt="two processes", width=64, height=64)
    deadline = time.monotonic() + 20
    while (data := await pair.status(task_id, "demo-image"))["state"] != "success":
        assert data["state"] in {"pending", "processing"}, data
        assert time.monotonic() < deadline, data
        await asyncio.sleep(0.05)
    assert '"resultUrls"' in data["resultJson"]


async def test_long_poll_wakes_on_a_change_made_by_another_process(pair: Pair) -> None:
    task_id = await pair.submit(duration_ms=400)
    started = time.perf_counter()
    data = await pair.status(task_id, wait=30)
    while data["state"] != "success":
        data = await pair.status(task_id, wait=30)
    # Woken by NOTIFY, not by the 30 s timeout.
    assert time.perf_counter() - started < 15


async def test_cancel_through_one_process_stops_the_run_in_another(pair: Pair) -> None:
    task_id = await pair.submit(duration_ms=30_000)
    await pair.status(task_id, wait=10)  # pending -> processing
    response = await pair.http.post(
        "/api/v1/cancelTask/demo-echo", params={"taskId": task_id}, headers=bearer(pair.key)
    )
    assert response.status_code == 200, response.text
    deadline = time.monotonic() + 15
    while (data := await pair.status(task_id, wait=5))["state"] != "failed":
        assert time.monotonic() < deadline, data
    assert data["failCode"] == "CANCELED"


async def test_idempotent_submits_make_one_task_on_postgres(pair: Pair) -> None:
    body = {"input": {"prompt": "once"}}
    headers = {**bearer(pair.key), "Idempotency-Key": "pg-once"}
    responses = await asyncio.gather(
        *(pair.http.post("/api/v1/generateTask/demo-echo", json=body, headers=headers) for _ in range(8))
    )
    assert {r.status_code for r in responses} == {200}
    assert len({r.json()["data"]["taskId"] for r in responses}) == 1
