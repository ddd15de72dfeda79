"""`kind = "cog"` end to end: a real `gengate serve` in front of real cog servers
(`python -m cog.server.http`, no Docker), driven over HTTP like a client would."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from cog_servers import CogServer, start_cog

pytestmark = pytest.mark.e2e

#: The e2e conftest's `GengateServer` and `Launcher` (conftest modules are not imported by name).
GengateServer = Any


def config(*urls: str) -> str:
    listed = ", ".join(f'"{url}"' for url in urls)
    return f"""\
[providers.mycog]
kind = "cog"
urls = [{listed}]
health_interval_s = 0.2

[models.cog-image]
providers = ["mycog"]
max_attempts = 2
retry_backoff_s = 0.1

[models.cog-once]
providers = ["mycog"]
max_attempts = 1
"""


@pytest.fixture(scope="module")
def cog_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CogServer]:
    server = start_cog("image", tmp_path_factory.mktemp("cog-e2e"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(start_gengate_module: Any, cog_server: CogServer) -> GengateServer:
    return start_gengate_module("cog", config=config(cog_server.url))


@pytest.fixture(scope="module")
def key(gateway: GengateServer) -> str:
    secret: str = gateway.create_key("cog")["key"]
    return secret


def image_of(url: str) -> Image.Image:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    return Image.open(io.BytesIO(response.content))


def test_a_prediction_becomes_a_result_file_and_its_logs_the_tasks(gateway: GengateServer, key: str) -> None:
    task_id = gateway.submit_ok(
        key, "cog-image", {"prompt": "a square", "color": "blue", "size": 20, "steps": 2, "step_s": 0.01}
    )
    data = gateway.wait_task(key, "cog-image", task_id)
    assert data["state"] == "success", data
    urls = json.loads(data["resultJson"])["resultUrls"]
    assert len(urls) == 1
    image = image_of(urls[0])
    assert (image.format, image.size) == ("PNG", (20, 20))
    assert image.getpixel((0, 0)) == (0, 0, 255)
    prediction = gateway.http.get(f"/v1/predictions/{task_id}", headers=gateway.auth(key))
    assert prediction.status_code == 200, prediction.text
    assert prediction.json()["logs"].splitlines() == ["step 1/2", "step 2/2"]


def test_a_failing_prediction_fails_the_task(gateway: GengateServer, key: str) -> None:
    task_id = gateway.submit_ok(key, "cog-image", {"prompt": "doomed", "fail": True})
    data = gateway.wait_task(key, "cog-image", task_id)
    assert data["state"] == "failed", data
    assert data["failCode"] == "PROVIDER_ERROR"
    assert "the model broke on 'doomed'" in data["failMsg"]


def test_the_servers_schema_is_shown_and_checked(gateway: GengateServer, key: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        models = gateway.http.get("/api/v1/models", headers=gateway.auth(key)).json()["data"]["models"]
        schema = next(model for model in models if model["id"] == "cog-image")["inputSchema"]["predict"]
        if "required" in schema or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert schema["required"] == ["prompt"]
    assert schema["properties"]["size"]["maximum"] == 256
    response = gateway.submit(key, "cog-image", {"prompt": "x", "size": 4})
    assert response.status_code == 400, response.text
    assert "input.size: 4 is less than the minimum of 8" in response.json()["message"]


def test_readyz_and_metrics_show_the_servers(gateway: GengateServer, cog_server: CogServer) -> None:
    ready = gateway.http.get("/readyz").json()
    assert ready["servers"]["mycog"] == [
        {"url": cog_server.url, "state": "ready", "busy": 0, "capacity": 1, "reason": None}
    ]
    metrics = gateway.http.get("/metrics").text
    assert (
        f'gengate_model_server_state{{provider="mycog",state="ready",url="{cog_server.url}"}} 1.0' in metrics
    )
    assert f'gengate_model_server_capacity{{provider="mycog",url="{cog_server.url}"}} 1.0' in metrics


def test_a_server_killed_mid_task(start_gengate: Any, tmp_path: Path, cog_server: CogServer) -> None:
    """Killed under a task that may try once, it fails WORKER_LOST; killed under one that may try
    twice, its second attempt runs on another server of the pool."""
    doomed = [start_cog("image", tmp_path), start_cog("image", tmp_path)]
    try:
        gateway = start_gengate("cog-kill", config=config(doomed[0].url, doomed[1].url, cog_server.url))
        key = gateway.create_key("kill")["key"]
        slow = {"prompt": "slow", "steps": 400, "step_s": 0.05}
        for model, server in (("cog-once", doomed[0]), ("cog-image", doomed[1])):
            task_id = gateway.submit_ok(key, model, slow if model == "cog-once" else {**slow, "steps": 4})
            deadline = time.monotonic() + 20
            while server.health() != "BUSY":  # the first server with room took it
                assert time.monotonic() < deadline, f"{server.url} never got the task"
                time.sleep(0.02)
            server.kill()
            data = gateway.wait_task(key, model, task_id, timeout=30)
            if model == "cog-once":
                assert data["state"] == "failed", data
                assert data["failCode"] == "WORKER_LOST"
            else:
                assert data["state"] == "success", data
                assert image_of(json.loads(data["resultJson"])["resultUrls"][0]).format == "PNG"
        down = {s["url"]: s for s in gateway.http.get("/readyz").json()["servers"]["mycog"]}
        assert [down[server.url]["state"] for server in doomed] == ["down", "down"]
    finally:
        for server in doomed:
            server.stop()
