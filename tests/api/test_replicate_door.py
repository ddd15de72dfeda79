"""The Replicate door in process: creating, holding, reading, listing, canceling and streaming
predictions, its problem-detail errors, webhooks, and one task read through every door."""

from __future__ import annotations

import asyncio
import json
import time
from ipaddress import ip_network
from typing import Any

import httpx
import orjson
import pytest

from gengate.api.replicate import ReplicateRoutes
from gengate.dialects import render_callback
from gengate.runtime import Gateway

HOOK = "http://127.0.0.1:9/hook"  # loopback, admitted per test; nothing listens on the discard port
FIELDS = {
    "id",
    "model",
    "version",
    "status",
    "input",
    "output",
    "logs",
    "error",
    "metrics",
    "created_at",
    "started_at",
    "completed_at",
    "urls",
}


def token(key: str) -> dict[str, str]:
    return {"Authorization": f"Token {key}"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """A problem body the client turns into `ReplicateError`, with our error object and trace id."""
    body: dict[str, Any] = response.json()
    assert response.status_code == status, body
    assert body["status"] == status
    assert isinstance(body["title"], str)
    assert body["title"]
    assert body["detail"] == body["error"]["message"]
    assert body["error"]["code"] == code, body
    assert body["trace_id"] == response.headers["x-trace-id"]
    return body


async def create(
    http: httpx.AsyncClient, key: str, model: str, task_input: dict[str, Any], **extra: Any
) -> httpx.Response:
    headers = {**token(key), **extra.pop("headers", {})}
    return await http.post(
        f"/v1/models/{model}/predictions", json={"input": task_input, **extra}, headers=headers
    )


async def get(http: httpx.AsyncClient, key: str, prediction_id: str) -> dict[str, Any]:
    response = await http.get(f"/v1/predictions/{prediction_id}", headers=token(key))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def ended(http: httpx.AsyncClient, key: str, prediction_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while (body := await get(http, key, prediction_id))["status"] not in {"succeeded", "failed", "canceled"}:
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.05)
    return body


@pytest.fixture
def allow_loopback(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gateway.tasks.callback_policy, "allowed", (ip_network("127.0.0.0/8"),))


# -- creating -----------------------------------------------------------------------------------
async def test_a_held_create_answers_the_finished_prediction(http: httpx.AsyncClient, api_key: str) -> None:
    response = await create(
        http,
        api_key,
        "gengate/demo-image",
        {"prompt": "cat", "width": 64, "height": 64},
        headers={"Prefer": "wait"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == FIELDS
    assert (body["status"], body["model"], body["error"]) == ("succeeded", "gengate/demo-image", None)
    assert body["input"]["prompt"] == "cat"
    [url] = body["output"]  # an image model's output is a list
    image = await http.get(httpx.URL(url).raw_path.decode())
    assert image.content.startswith(b"\x89PNG")
    assert "drawing 1 image(s) of 64x64" in body["logs"]
    assert body["metrics"]["predict_time"] >= 0
    assert body["urls"]["get"].endswith(f"/v1/predictions/{body['id']}")
    assert await get(http, api_key, body["id"]) == body


async def test_a_held_create_that_runs_out_answers_starting(http: httpx.AsyncClient, api_key: str) -> None:
    """`replicate.run` polls on `starting` only: anything else and it returns an empty output."""
    response = await create(
        http, api_key, "gengate/demo-echo", {"duration_ms": 3000}, headers={"Prefer": "wait=1"}
    )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "starting"
    assert (await get(http, api_key, response.json()["id"]))["status"] in {"starting", "processing"}


async def test_an_unheld_create_answers_at_once(http: httpx.AsyncClient, api_key: str) -> None:
    response = await create(http, api_key, "gengate/demo-echo", {"prompt": "x", "duration_ms": 200})
    body = response.json()
    assert (response.status_code, body["status"], body["output"], body["logs"]) == (201, "starting", None, "")
    done = await ended(http, api_key, body["id"])
    result = await http.get(httpx.URL(done["output"]).raw_path.decode())  # one JSON file: its URL
    assert result.json()["prompt"] == "x"
    assert done["logs"].splitlines() == [f"step {n}/10" for n in range(1, 11)]


@pytest.mark.parametrize(
    "body", [{"version": "gengate/demo-echo"}, {"model": "demo-echo"}, {"version": "demo-echo"}]
)
async def test_create_by_version_or_model(
    http: httpx.AsyncClient, api_key: str, body: dict[str, Any]
) -> None:
    response = await http.post(
        "/v1/predictions",
        json={**body, "input": {"prompt": "v"}},
        headers={**bearer(api_key), "Prefer": "wait=5"},
    )
    assert response.status_code == 201, response.text
    assert (response.json()["status"], response.json()["model"]) == ("succeeded", "gengate/demo-echo")


async def test_a_failing_model_reads_failed_with_its_message(http: httpx.AsyncClient, api_key: str) -> None:
    response = await create(
        http, api_key, "gengate/demo-echo", {"fail_code": "PROVIDER_ERROR"}, headers={"Prefer": "wait"}
    )
    body = response.json()
    assert (body["status"], body["output"]) == ("failed", None)
    assert "PROVIDER_ERROR" in body["error"]


async def test_an_idempotent_create_gives_the_same_prediction(http: httpx.AsyncClient, api_key: str) -> None:
    first = await create(
        http, api_key, "gengate/demo-echo", {"prompt": "i"}, headers={"Idempotency-Key": "k1"}
    )
    again = await create(
        http, api_key, "gengate/demo-echo", {"prompt": "i"}, headers={"Idempotency-Key": "k1"}
    )
    assert first.json()["id"] == again.json()["id"]
    other = await create(
        http, api_key, "gengate/demo-echo", {"prompt": "j"}, headers={"Idempotency-Key": "k1"}
    )
    problem(other, 409, "conflict")


# -- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "code", "fragment"),
    [
        ("/v1/models/gengate/nope/predictions", {"input": {}}, {}, 404, "model_not_found", "gengate/nope"),
        (
            "/v1/models/acme/demo-echo/predictions",
            {"input": {}},
            {},
            404,
            "model_not_found",
            "acme/demo-echo",
        ),
        ("/v1/predictions", {"input": {}}, {}, 400, "bad_request", "version"),
        ("/v1/predictions", {"version": 5, "input": {}}, {}, 400, "bad_request", "version"),
        ("/v1/models/gengate/demo-echo/predictions", {}, {}, 400, "bad_request", "input"),
        (
            "/v1/models/gengate/demo-image/predictions",
            {"input": {"prompt": "x", "width": 1}},
            {},
            400,
            "bad_request",
            "width",
        ),
        (
            "/v1/models/gengate/demo-echo/predictions",
            {"input": {}},
            {"Prefer": "wait=61"},
            400,
            "bad_request",
            "wait",
        ),
        (
            "/v1/models/gengate/demo-echo/predictions",
            {"input": {}},
            {"Prefer": "wait=x"},
            400,
            "bad_request",
            "wait",
        ),
        (
            "/v1/models/gengate/demo-echo/predictions",
            {"input": {}, "webhook_events_filter": ["x"]},
            {},
            400,
            "bad_request",
            "webhook_events_filter",
        ),
        (
            "/v1/models/gengate/demo-echo/predictions",
            {"input": {}, "webhook": "http://127.0.0.1/x"},
            {},
            400,
            "bad_request",
            "loopback",
        ),
    ],
)
async def test_create_errors(
    http: httpx.AsyncClient,
    api_key: str,
    *,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str],
    status: int,
    code: str,
    fragment: str,
) -> None:
    response = await http.post(path, json=body, headers={**token(api_key), **headers})
    assert fragment in problem(response, status, code)["detail"]


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "code"),
    [
        ("GET", "/v1/predictions/task_x", {}, 401, "no_token"),
        ("GET", "/v1/predictions/task_x", {"Authorization": "Token nope"}, 401, "invalid_token"),
        ("GET", "/v1/predictions", {"Authorization": "Bearer nope"}, 401, "invalid_token"),
        ("POST", "/v1/predictions/task_x/cancel", {}, 401, "no_token"),
        ("GET", "/v1/webhooks/default/secret", {}, 401, "no_token"),
        ("GET", "/v1/models/gengate/demo-echo/predictions", {}, 405, "no_api"),
        ("GET", "/v1/predictions/task_x/nothing", {}, 404, "no_api"),
    ],
)
async def test_errors_without_a_key_are_problems_too(
    http: httpx.AsyncClient, *, method: str, path: str, headers: dict[str, str], status: int, code: str
) -> None:
    problem(await http.request(method, path, headers=headers), status, code)


async def test_one_key_never_sees_another_keys_predictions(
    http: httpx.AsyncClient, api_key: str, gateway: Gateway
) -> None:
    _other, other_key = await gateway.keys.create("other")
    mine = (await create(http, api_key, "gengate/demo-echo", {"prompt": "mine"})).json()["id"]
    problem(await http.get(f"/v1/predictions/{mine}", headers=token(other_key)), 404, "task_not_found")
    problem(
        await http.post(f"/v1/predictions/{mine}/cancel", headers=token(other_key)), 404, "task_not_found"
    )
    problem(await http.get(f"/v1/predictions/{mine}/stream", headers=token(other_key)), 404, "task_not_found")
    listed = (await http.get("/v1/predictions", headers=token(other_key))).json()
    assert listed == {"previous": None, "next": None, "results": []}


# -- reading ------------------------------------------------------------------------------------
async def test_list_pages_newest_first(
    http: httpx.AsyncClient, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gengate.api.replicate.PAGE_SIZE", 2)
    ids = [
        (await create(http, api_key, "gengate/demo-echo", {"prompt": str(n)})).json()["id"] for n in range(3)
    ]
    first = (await http.get("/v1/predictions", headers=token(api_key))).json()
    assert [p["id"] for p in first["results"]] == ids[:0:-1]
    assert first["results"][0]["logs"] is None  # a listing reads no logs
    assert first["next"].startswith("http://127.0.0.1:")
    second = (await http.get(httpx.URL(first["next"]).raw_path.decode(), headers=token(api_key))).json()
    assert ([p["id"] for p in second["results"]], second["next"]) == ([ids[0]], None)


async def test_cancel_a_running_prediction(http: httpx.AsyncClient, api_key: str) -> None:
    created = (await create(http, api_key, "gengate/demo-echo", {"duration_ms": 5000})).json()
    response = await http.post(f"/v1/predictions/{created['id']}/cancel", headers=token(api_key))
    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["error"]) == ("canceled", None)
    assert (await get(http, api_key, created["id"]))["status"] == "canceled"


async def test_stream_sends_logs_output_and_done(http: httpx.AsyncClient, api_key: str) -> None:
    created = (await create(http, api_key, "gengate/demo-echo", {"prompt": "s", "duration_ms": 300})).json()
    response = await http.get(httpx.URL(created["urls"]["stream"]).raw_path.decode(), headers=token(api_key))
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [
        dict(line.split(": ", 1) for line in block.splitlines())
        for block in response.text.split("\n\n")
        if block
    ]
    names = [event["event"] for event in events]
    assert names == ["logs"] * 10 + ["output", "done"]
    assert [event["id"] for event in events] == [str(n) for n in range(1, 13)]
    assert events[-2]["data"] == (await get(http, api_key, created["id"]))["output"]


async def test_stream_of_a_failed_prediction_sends_error(http: httpx.AsyncClient, api_key: str) -> None:
    created = (await create(http, api_key, "gengate/demo-echo", {"fail_code": "TIMEOUT"})).json()
    response = await http.get(f"/v1/predictions/{created['id']}/stream", headers=token(api_key))
    blocks = [block for block in response.text.split("\n\n") if block]
    assert "event: error" in blocks[-2]
    assert "TIMEOUT" in json.loads(blocks[-2].split("data: ", 1)[1])["detail"]
    assert blocks[-1].endswith("event: done\ndata: {}")


# -- one task, every door -----------------------------------------------------------------------
async def test_a_replicate_prediction_reads_through_every_door(http: httpx.AsyncClient, api_key: str) -> None:
    created = (
        await create(http, api_key, "gengate/demo-echo", {"prompt": "x"}, headers={"Prefer": "wait"})
    ).json()
    status = await http.get(
        "/api/v1/statusTask/demo-echo", params={"taskId": created["id"]}, headers=bearer(api_key)
    )
    urls = json.loads(status.json()["data"]["resultJson"])["resultUrls"]
    assert (status.json()["data"]["state"], urls) == ("success", [created["output"]])
    record = await http.get(
        "/api/v1/jobs/recordInfo", params={"taskId": created["id"]}, headers=bearer(api_key)
    )
    assert record.json()["data"]["state"] == "success"
    assert json.loads(record.json()["data"]["param"]) == {"input": {"prompt": "x"}}


async def test_an_apixo_task_reads_as_a_prediction(http: httpx.AsyncClient, api_key: str) -> None:
    submitted = await http.post(
        "/api/v1/generateTask/demo-echo",
        json={"request_type": "sync", "input": {"prompt": "a"}},
        headers=bearer(api_key),
    )
    task_id = submitted.json()["data"]["taskId"]
    body = await get(http, api_key, task_id)
    assert (body["status"], body["model"]) == ("succeeded", "gengate/demo-echo")
    assert body["output"] == json.loads(submitted.json()["data"]["resultJson"])["resultUrls"][0]


# -- webhooks -----------------------------------------------------------------------------------
@pytest.mark.usefixtures("allow_loopback")
async def test_a_webhook_gets_the_prediction_when_it_completes(
    http: httpx.AsyncClient, api_key: str, gateway: Gateway
) -> None:
    created = (
        await create(
            http,
            api_key,
            "gengate/demo-echo",
            {"prompt": "w"},
            webhook=HOOK,
            webhook_events_filter=["completed"],
        )
    ).json()
    done = await ended(http, api_key, created["id"])
    [delivery] = await gateway.store.deliveries_of_task(created["id"])
    assert (delivery.url, delivery.dialect) == (HOOK, "replicate")
    task = await gateway.store.get_task(created["id"])
    assert task is not None
    logs = await gateway.store.task_logs(task.id)
    sent = orjson.loads(render_callback(task.dialect, task, gateway.links, logs))
    assert sent == done  # the same prediction, logs and absolute URLs included
    assert orjson.loads(render_callback(task.dialect, task, gateway.links))["logs"] is None  # not read


@pytest.mark.usefixtures("allow_loopback")
@pytest.mark.parametrize(("events", "owed"), [(None, 1), (["start", "completed"], 2), (["completed"], 1)])
async def test_a_webhook_gets_start_when_asked(
    http: httpx.AsyncClient, api_key: str, gateway: Gateway, events: list[str] | None, owed: int
) -> None:
    """With `start` in the filter, the run's start is owed a delivery too, first; it is sent as
    the prediction stands when it goes out. Without a filter, as Replicate: the completion."""
    extra = {} if events is None else {"webhook_events_filter": events}
    created = (await create(http, api_key, "gengate/demo-echo", {}, webhook=HOOK, **extra)).json()
    await ended(http, api_key, created["id"])
    deliveries = await gateway.store.deliveries_of_task(created["id"])
    assert len(deliveries) == owed
    assert {d.url for d in deliveries} == {HOOK}


@pytest.mark.usefixtures("allow_loopback")
async def test_a_filter_without_completed_sends_no_completed_webhook(
    http: httpx.AsyncClient, api_key: str, gateway: Gateway
) -> None:
    created = (
        await create(http, api_key, "gengate/demo-echo", {}, webhook=HOOK, webhook_events_filter=["start"])
    ).json()
    await ended(http, api_key, created["id"])
    assert await gateway.store.deliveries_of_task(created["id"]) == []


async def test_the_signing_secret_is_the_keys(http: httpx.AsyncClient, api_key: str) -> None:
    secret = (await http.get("/v1/webhooks/default/secret", headers=token(api_key))).json()
    account = (await http.get("/api/v1/account", headers=bearer(api_key))).json()["data"]
    assert secret == {"key": account["webhook_secret"]}
    assert secret["key"].startswith("whsec_")


# -- the same keys, credits and limits ----------------------------------------------------------
async def test_rate_limits_and_credits_hold_at_this_door(http: httpx.AsyncClient, gateway: Gateway) -> None:
    _limited, limited = await gateway.keys.create("limited", rate_limit="2/minute")
    for _ in range(2):
        assert (await http.get("/v1/predictions", headers=token(limited))).status_code == 200
    refused = await http.get("/v1/predictions", headers=token(limited))
    problem(refused, 429, "too_many_requests")
    assert int(refused.headers["retry-after"]) > 0
    _broke, broke = await gateway.keys.create("broke", credits=0)
    problem(await create(http, broke, "gengate/demo-echo", {}), 403, "used_up")


async def test_finished_bodies_are_kept_within_their_byte_bound(
    http: httpx.AsyncClient, api_key: str, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finished bodies are cached (they never change), bounded in bytes: logs can be large."""
    routes = ReplicateRoutes(gateway.api_context())
    ids = [
        (
            await create(http, api_key, "gengate/demo-echo", {"prompt": str(n)}, headers={"Prefer": "wait"})
        ).json()["id"]
        for n in range(3)
    ]
    key = await gateway.keys.authenticate(f"Bearer {api_key}")
    first = await routes.render(await gateway.tasks.get(key, ids[0]))
    size = len(orjson.dumps(first))
    monkeypatch.setattr("gengate.api.replicate.FINISHED_CACHE_BYTES", 2 * size + size // 2)
    for task_id in ids:
        body = await routes.render(await gateway.tasks.get(key, task_id))
        assert orjson.loads(orjson.dumps(body)) == await get(http, api_key, task_id)
        assert routes._finished_bytes <= 2 * size + size // 2
    assert len(routes._finished) == 1  # the third body did not fit beside the first two
