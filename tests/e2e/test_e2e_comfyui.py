"""A real `gengate serve` with a `comfyui` provider of two ComfyUI-compatible servers: tasks run
their workflow, spread over both, show progress, and a cancel reaches the server."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from comfyui_fake import FakeComfy, text_to_image_workflow

#: The e2e conftest's types; not imported, since `conftest` names another module in a whole run.
GengateServer = Any
Launcher = Any

pytestmark = pytest.mark.e2e

MODEL = "sdxl-comfy"


@pytest.fixture
def fakes(tmp_path: Path) -> Iterator[tuple[FakeComfy, FakeComfy]]:
    with FakeComfy(tmp_path / "comfy-a") as a, FakeComfy(tmp_path / "comfy-b") as b:
        yield a, b


@pytest.fixture
def comfy_gateway(
    tmp_path: Path, start_gengate: Launcher, fakes: tuple[FakeComfy, FakeComfy]
) -> GengateServer:
    workflow = tmp_path / "sdxl.json"
    workflow.write_text(json.dumps(text_to_image_workflow()))
    config = f"""\
[providers.comfy]
kind = "comfyui"
urls = ["{fakes[0].url}", "{fakes[1].url}"]
queue_ahead = 1

[models.{MODEL}]
providers = ["comfy"]
workflow = "{workflow}"
max_attempts = 1
[models.{MODEL}.bind]
prompt = "6.inputs.text"
negative_prompt = "7.inputs.text"
seed = "3.inputs.seed"
width = "5.inputs.width"
height = "5.inputs.height"
"""
    return start_gengate("comfyui", config=config)


def test_tasks_run_their_workflow_over_the_pool(
    comfy_gateway: GengateServer, fakes: tuple[FakeComfy, FakeComfy]
) -> None:
    server = comfy_gateway
    key = server.create_key("comfy")["key"]
    for fake in fakes:
        fake.hold()
    task_ids = [
        server.submit_ok(key, MODEL, {"prompt": f"fox {i}", "seed": i, "width": 40}) for i in range(4)
    ]
    running = server.wait_task(key, MODEL, task_ids[0], until=lambda data: data.get("progress", 0) > 0)
    assert running["state"] == "processing"
    for fake in fakes:
        fake.release()

    for task_id in task_ids:
        data = server.wait_task(key, MODEL, task_id)
        assert data["state"] == "success", data
        [url] = json.loads(data["resultJson"])["resultUrls"]
        answer = server.http.get(url)
        assert answer.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(answer.content)) as image:
            assert image.size == (40, 48)
    assert len(fakes[0].prompts) >= 1
    assert len(fakes[1].prompts) >= 1
    assert len(fakes[0].prompts) + len(fakes[1].prompts) == 4
    assert max(fakes[0].max_pending, fakes[1].max_pending) <= 1


def test_a_canceled_task_is_interrupted_on_the_server(
    comfy_gateway: GengateServer, fakes: tuple[FakeComfy, FakeComfy]
) -> None:
    server = comfy_gateway
    key = server.create_key("comfy-cancel")["key"]
    for fake in fakes:
        fake.hold()
    task_id = server.submit_ok(key, MODEL, {"prompt": "a slow fox"})
    server.wait_task(key, MODEL, task_id, until=lambda data: data.get("progress", 0) > 0)

    answer = server.http.post(
        "/api/v1/cancelTask/" + MODEL, params={"taskId": task_id}, headers=server.auth(key)
    )
    assert answer.status_code == 200, answer.text
    data = server.wait_task(key, MODEL, task_id)

    assert (data["state"], data["failCode"]) == ("failed", "CANCELED")
    [fake] = [fake for fake in fakes if fake.prompts]
    assert ("POST", "/interrupt") in fake.requests
    prompt_id = fake.prompts[0]["prompt_id"]
    assert fake.ended(prompt_id)["status"]["status_str"] == "error"


def test_a_node_error_fails_the_task_as_invalid_input(comfy_gateway: GengateServer) -> None:
    server = comfy_gateway
    key = server.create_key("comfy-bad")["key"]
    task_id = server.submit_ok(key, MODEL, {"width": 99999})
    data = server.wait_task(key, MODEL, task_id)
    assert (data["state"], data["failCode"]) == ("failed", "INVALID_INPUT")
    assert "bigger than max of 16384: width" in data["failMsg"]
