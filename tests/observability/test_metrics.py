"""Task metrics on `/metrics`, moved by real tasks on the demo models in an in-process gateway:
submits and ends by model, dialect, state and failCode; queue waits, run times and file saves;
HTTP durations per route template; the cluster's queue gauges; callback lag; and no label ever
carries a key id or a task id."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gengate.domain.states import TaskState
from gengate.runtime import Gateway
from gengate.settings import ModelConfig, Settings
from gengate.worker.pool import WorkerPool
from hostile_http import HostileServer, Reply
from metrics_scrape import Sample, parse, total

ECHO = {"mode": "echo", "prompt": "hi"}
SUBMIT = "/api/v1/generateTask/{model}"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def scrape(http: httpx.AsyncClient) -> list[Sample]:
    response = await http.get("/metrics")
    assert response.status_code == 200
    return parse(response.text)


async def submit(http: httpx.AsyncClient, key: str, model: str = "demo-echo", **fields: Any) -> str:
    body = {"request_type": "async", "input": {**ECHO, **fields.pop("input", {})}, **fields}
    response = await http.post(SUBMIT.format(model=model), json=body, headers=bearer(key))
    assert response.status_code == 200, response.text
    task_id: str = response.json()["data"]["taskId"]
    return task_id


async def done(gateway: Gateway, task_id: str) -> None:
    task = await gateway.store.get_task(task_id)
    assert task is not None
    ended = await gateway.tasks.wait_until_done(task, 30)
    assert ended.state.is_terminal()


@pytest.fixture
async def start_gateway(settings: Settings) -> AsyncIterator[Any]:
    started: list[Gateway] = []

    async def start(**changes: Any) -> tuple[Gateway, httpx.AsyncClient, str]:
        gateway = Gateway(settings.model_copy(update=changes))
        await gateway.start()
        started.append(gateway)
        _key, secret = await gateway.keys.create("metrics")
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=gateway.asgi()), base_url="http://gw.test"
        )
        clients.append(client)
        return gateway, client, secret

    clients: list[httpx.AsyncClient] = []
    yield start
    for client in clients:
        await client.aclose()
    for gateway in started:
        await gateway.stop()


async def test_task_counts_times_and_http_durations_move_as_tasks_run(
    gateway: Gateway, http: httpx.AsyncClient, api_key: str
) -> None:
    before = await scrape(http)
    assert total(before, "gengate_tasks_submitted_total") == 0
    ok = await submit(http, api_key)
    bad = await submit(http, api_key, input={"fail_code": "CONTENT_VIOLATION"})
    kie = await http.post(
        "/api/v1/jobs/createTask", json={"model": "demo-echo", "input": ECHO}, headers=bearer(api_key)
    )
    assert kie.status_code == 200, kie.text
    for task_id in (ok, bad, kie.json()["data"]["taskId"]):
        await done(gateway, task_id)
    status = await http.get(f"/api/v1/statusTask/demo-echo?taskId={ok}", headers=bearer(api_key))
    assert status.json()["data"]["state"] == "success"

    after = await scrape(http)
    assert total(after, "gengate_tasks_submitted_total", model="demo-echo", dialect="apixo") == 2
    assert total(after, "gengate_tasks_submitted_total", model="demo-echo", dialect="kie") == 1
    ended = "gengate_tasks_ended_total"
    assert total(after, ended, model="demo-echo", dialect="apixo", state="success", fail_code="") == 1
    assert total(after, ended, dialect="apixo", state="failed", fail_code="CONTENT_VIOLATION") == 1
    assert total(after, ended, dialect="kie", state="success") == 1
    timed = {"model": "demo-echo", "provider": "demo-echo"}
    assert total(after, "gengate_task_queue_wait_seconds_count", **timed) == 3
    assert total(after, "gengate_task_run_seconds_count", **timed) == 3
    assert total(after, "gengate_task_run_seconds_sum", **timed) > 0
    assert total(after, "gengate_file_save_seconds_count") == 2  # the successes saved files
    http_count = "gengate_http_request_duration_seconds_count"
    route = "/api/v1/generateTask/{model}"
    assert total(after, http_count, method="POST", route=route, status="200") == 2
    assert total(after, http_count, method="POST", route="/api/v1/jobs/createTask", status="200") == 1
    assert total(after, http_count, route="/api/v1/statusTask/{model}", status="200") == 1
    assert total(after, http_count, route="/metrics", status="200") == 1  # the first scrape


async def test_unmatched_paths_and_odd_methods_share_one_series(http: httpx.AsyncClient) -> None:
    for path in ("/nope/1", "/nope/2", "/task_abc/xyz"):
        assert (await http.get(path)).status_code == 404
    assert (await http.request("BREW", "/metrics")).status_code == 405
    samples = await scrape(http)
    count = "gengate_http_request_duration_seconds_count"
    assert total(samples, count, method="GET", route="unmatched", status="404") == 3
    assert total(samples, count, method="OTHER", route="/metrics", status="405") == 1
    assert not [s for s in samples if "nope" in str(s.labels) or "task_abc" in str(s.labels)]


async def test_no_label_carries_a_key_id_or_task_id(gateway: Gateway, http: httpx.AsyncClient) -> None:
    key, api_key = await gateway.keys.create("labels")
    task_ids = [await submit(http, api_key) for _ in range(3)]
    for task_id in task_ids:
        await done(gateway, task_id)
        await http.get(f"/api/v1/statusTask/demo-echo?taskId={task_id}", headers=bearer(api_key))
    samples = await scrape(http)
    values = {value for s in samples for value in s.labels.values()}
    for secret in (*task_ids, key.id, api_key):
        assert not [v for v in values if secret in v], secret
    names = {name for s in samples if s.name.startswith("gengate_") for name in s.labels}
    assert names <= {"model", "dialect", "state", "fail_code", "provider", "method", "route", "status"} | {
        "outcome",
        "le",
    }


async def test_a_canceled_pending_task_counts_as_ended_once(start_gateway: Any) -> None:
    gateway, http, key = await start_gateway(workers=0)
    task_id = await submit(http, key)
    for _ in range(2):  # the second cancel finds it ended and counts nothing
        response = await http.post(f"/api/v1/cancelTask/demo-echo?taskId={task_id}", headers=bearer(key))
        assert response.status_code == 200, response.text
    samples = await scrape(http)
    ended = "gengate_tasks_ended_total"
    assert total(samples, ended, model="demo-echo", state="failed", fail_code="CANCELED") == 1
    assert total(samples, ended) == 1
    assert gateway.metrics.tasks is not None


async def test_the_cluster_gauges_count_pending_and_running_tasks(start_gateway: Any) -> None:
    gateway, http, key = await start_gateway(workers=0)
    for _ in range(3):
        await submit(http, key)
    running = await submit(
        http, key, model="demo-image", input={"mode": "text-to-image", "duration_ms": 60_000}
    )
    # A worker of another process (here: a pool of its own on the same store) claims one task.
    spec = gateway.catalogue.get("demo-image")
    worker = WorkerPool(
        store=gateway.store,
        hub=gateway.hub,
        catalogue=type(gateway.catalogue)({"demo-image": spec}),
        providers=gateway.providers,
        files=gateway.files,
    )
    await worker.start()
    try:
        task = await gateway.store.get_task(running)
        assert task is not None
        while task.state is TaskState.PENDING:
            task = await gateway.tasks.wait_for_change(task, 5)
        samples = await scrape(http)
    finally:
        await worker.stop(grace_s=0)
    assert total(samples, "gengate_queue_depth", model="demo-echo") == 3
    assert total(samples, "gengate_tasks_running", model="demo-echo") == 0
    assert total(samples, "gengate_queue_depth", model="demo-image") == 0
    assert total(samples, "gengate_tasks_running", model="demo-image") == 1


async def test_a_lost_worker_counts_a_requeue_then_worker_lost(start_gateway: Any) -> None:
    fragile = {"fragile": ModelConfig(provider="demo-echo", max_attempts=1)}
    gateway, http, key = await start_gateway(workers=0, models=fragile)
    lost = await submit(http, key, model="fragile")
    again = await submit(http, key)
    # A worker claims both tasks and dies: its leases run out at once.
    claims = await gateway.store.claim({"fragile": 1, "demo-echo": 1}, "w_gone", 2, lease_ms=1)
    assert {claim.task.id for claim in claims} == {lost, again}
    await asyncio.sleep(0.01)
    pool = WorkerPool(
        store=gateway.store,
        hub=gateway.hub,
        catalogue=gateway.catalogue,
        providers=gateway.providers,
        files=gateway.files,
        metrics=gateway.metrics.tasks,
    )
    await pool.start()  # its reaper looks at once
    try:
        await done(gateway, lost)
        await done(gateway, again)  # queued again, then run by this pool
    finally:
        await pool.stop()
    samples = await scrape(http)
    ended = "gengate_tasks_ended_total"
    assert total(samples, ended, model="fragile", state="failed", fail_code="WORKER_LOST") == 1
    assert total(samples, "gengate_tasks_requeued_total", model="demo-echo") == 1
    assert total(samples, ended, model="demo-echo", state="success") == 1


async def test_a_delivered_callback_counts_its_lag(start_gateway: Any) -> None:
    async with HostileServer(lambda _method, _path: Reply(204)) as receiver:
        gateway, http, key = await start_gateway(webhook_allow=["127.0.0.0/8"])
        task_id = await submit(http, key, request_type="callback", callback_url=f"{receiver.base_url}/hook")
        await done(gateway, task_id)
        delivered = "gengate_webhook_attempts_total"
        while total(samples := await scrape(http), delivered, outcome="delivered") < 1:
            await asyncio.sleep(0.05)
    assert total(samples, "gengate_webhook_delivery_lag_seconds_count") == 1
    assert receiver.requests == [("POST", "/hook")]


async def test_every_model_has_its_queue_series(gateway: Gateway) -> None:
    """Models with no task at all are 0, not absent, so that alerts and panels see them."""
    families = {f.name: f for f in gateway.metrics.registry.collect()}
    models = {sample.labels["model"] for sample in families["gengate_queue_depth"].samples}
    assert models == {spec.id for spec in gateway.catalogue}


async def test_task_metrics_on_postgres(start_gateway: Any, pg_url: str) -> None:
    """PostgreSQL batches submits and successes into shared statements: each task still counts once."""
    gateway, http, key = await start_gateway(database_url=pg_url)
    ok = [await submit(http, key) for _ in range(3)]
    bad = await submit(http, key, input={"fail_code": "TIMEOUT"})
    for task_id in (*ok, bad):
        await done(gateway, task_id)
    samples = await scrape(http)
    ended = "gengate_tasks_ended_total"
    assert total(samples, "gengate_tasks_submitted_total", model="demo-echo") == 4
    assert total(samples, ended, model="demo-echo", state="success", fail_code="") == 3
    assert total(samples, ended, model="demo-echo", state="failed", fail_code="TIMEOUT") == 1
    assert total(samples, "gengate_task_run_seconds_count", model="demo-echo") == 4
    assert total(samples, "gengate_db_pool_max_connections") == gateway.settings.database_pool_size
    assert total(samples, "gengate_queue_depth", model="demo-echo") == 0


async def test_an_idempotent_replay_is_not_counted_again(http: httpx.AsyncClient, api_key: str) -> None:
    body = {"request_type": "async", "input": ECHO}
    headers = {**bearer(api_key), "Idempotency-Key": "once"}
    first = await http.post(SUBMIT.format(model="demo-echo"), json=body, headers=headers)
    again = await http.post(SUBMIT.format(model="demo-echo"), json=body, headers=headers)
    assert first.json()["data"]["taskId"] == again.json()["data"]["taskId"]
    assert total(await scrape(http), "gengate_tasks_submitted_total") == 1
