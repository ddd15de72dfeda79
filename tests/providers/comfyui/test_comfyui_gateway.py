"""A ComfyUI model configured in a gateway: the catalogue, a task's progress and logs, a refusal."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from comfy_support import BIND, eventually
from PIL import Image
from relay_support import relaying

from comfyui_fake import FakeComfy, text_to_image_workflow
from gengate.providers.registry import ConfigError


def _config(fake: FakeComfy, workflow_file: Path, **model: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    providers = {"comfy": {"kind": "comfyui", "urls": [fake.url], "poll_s": 0.05}}
    models = {
        "sdxl-comfy": {
            "providers": ["comfy"],
            "workflow": str(workflow_file),
            "bind": BIND,
            "max_attempts": 1,
            **model,
        }
    }
    return providers, models


async def test_a_task_runs_with_progress_and_logs(
    tmp_path: Path, fake: FakeComfy, workflow_file: Path
) -> None:
    providers, models = _config(fake, workflow_file)
    async with relaying(tmp_path, providers, models) as gateway:
        fake.hold()
        task_id = await gateway.submit("sdxl-comfy", {"prompt": "a lighthouse", "steps": 4, "width": 32})
        await eventually(lambda: bool(fake.running_ids()))
        midway = await gateway.wait("sdxl-comfy", task_id, until=lambda data: data.get("progress", 0) > 0)
        assert midway["state"] == "processing"
        fake.release()
        done = await gateway.wait("sdxl-comfy", task_id)

        assert done["state"] == "success", done
        [url] = json.loads(done["resultJson"])["resultUrls"]
        image = await gateway.http.get(url)
        assert image.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(image.content)) as png:
            assert png.size == (32, 48)
        logs = [log.line for log in await gateway.gateway.store.task_logs(task_id)]
        assert any("KSampler" in line for line in logs), logs


async def test_an_input_out_of_the_graphs_types_is_refused_at_submit(
    tmp_path: Path, fake: FakeComfy, workflow_file: Path
) -> None:
    providers, models = _config(fake, workflow_file)
    async with relaying(tmp_path, providers, models) as gateway:
        for bad in ({"steps": "many"}, {"unknown": 1}):
            response = await gateway.http.post(
                "/api/v1/generateTask/sdxl-comfy", json={"input": bad}, headers=gateway.auth()
            )
            assert response.status_code == 400, response.text
            assert fake.prompts == []


async def test_a_node_error_fails_the_task_with_invalid_input(
    tmp_path: Path, fake: FakeComfy, workflow_file: Path
) -> None:
    providers, models = _config(fake, workflow_file)
    async with relaying(tmp_path, providers, models) as gateway:
        done = await gateway.run("sdxl-comfy", {"height": 8})
    assert done["state"] == "failed"
    assert done["failCode"] == "INVALID_INPUT"
    assert "smaller than min of 16: height" in done["failMsg"]


@pytest.mark.parametrize(
    ("model", "words"),
    [
        ({"bind": {"prompt": "6.inputs.txt"}}, "has no input 'txt'; it has clip, text"),
        ({"bind": {"prompt": "6.inputs.clip"}}, "linked to another node's output"),
        ({"workflow": "missing.json"}, "cannot read workflow"),
        ({"workflow": None}, "needs `workflow`"),
    ],
)
async def test_a_wrong_workflow_or_binding_stops_the_start(
    tmp_path: Path, fake: FakeComfy, workflow_file: Path, model: dict[str, Any], words: str
) -> None:
    providers, models = _config(fake, workflow_file, **model)
    if models["sdxl-comfy"]["workflow"] is None:
        del models["sdxl-comfy"]["workflow"]
    with pytest.raises(ConfigError, match=words):
        async with relaying(tmp_path, providers, models):
            pass


async def test_a_workflow_on_a_model_without_a_comfyui_provider_stops_the_start(
    tmp_path: Path, workflow_file: Path
) -> None:
    models = {"m": {"providers": ["demo-image"], "workflow": str(workflow_file), "bind": BIND}}
    with pytest.raises(ConfigError, match="are for comfyui providers"):
        async with relaying(tmp_path, {}, models):
            pass


async def test_two_models_on_one_provider_each_run_their_own_workflow(
    tmp_path: Path, fake: FakeComfy, workflow_file: Path
) -> None:
    providers, models = _config(fake, workflow_file)
    other = text_to_image_workflow()
    other["5"]["inputs"]["width"] = 24
    other_file = tmp_path / "other.json"
    other_file.write_text(json.dumps(other))
    models["small"] = {**models["sdxl-comfy"], "workflow": str(other_file), "bind": {"text": "6.inputs.text"}}
    async with relaying(tmp_path, providers, models) as gateway:
        first = await gateway.run("sdxl-comfy", {"prompt": "one"})
        second = await gateway.run("small", {"text": "two"})
        catalogue = (await gateway.http.get("/api/v1/models", headers=gateway.auth())).text

    assert (first["state"], second["state"]) == ("success", "success")
    sent = [body["prompt"] for body in fake.prompts]
    assert (sent[0]["6"]["inputs"]["text"], sent[0]["5"]["inputs"]["width"]) == ("one", 64)
    assert (sent[1]["6"]["inputs"]["text"], sent[1]["5"]["inputs"]["width"]) == ("two", 24)
    assert '"text"' in catalogue
    assert '"negative_prompt"' in catalogue


async def test_readyz_and_metrics_show_the_servers_of_the_pool(
    tmp_path: Path, fake: FakeComfy, workflow_file: Path
) -> None:
    providers, models = _config(fake, workflow_file)
    async with relaying(tmp_path, providers, models) as gateway:
        ready = (await gateway.http.get("/readyz")).json()
        metrics = (await gateway.http.get("/metrics")).text

    assert ready["servers"]["comfy"] == [
        {"url": fake.url, "state": "ready", "busy": 0, "capacity": 2, "reason": None}
    ]
    assert fake.url in metrics


async def test_a_misspelt_option_stops_the_start(
    tmp_path: Path, fake: FakeComfy, workflow_file: Path
) -> None:
    providers, models = _config(fake, workflow_file)
    providers["comfy"]["queue_ahed"] = 2
    with pytest.raises(ConfigError, match=r'no setting "queue_ahed".*queue_ahead'):
        async with relaying(tmp_path, providers, models):
            pass


async def test_the_models_modes_name_the_workflows_mode(
    tmp_path: Path, fake: FakeComfy, workflow_file: Path
) -> None:
    """So that a workflow model can share a chain with relays of that mode; the API docs show
    each mode's schema."""
    providers, models = _config(fake, workflow_file, modes=["upscale"])
    models["other"] = {**models["sdxl-comfy"], "modes": None}
    async with relaying(tmp_path, providers, models) as gateway:
        done = await gateway.run("sdxl-comfy", {"mode": "upscale", "prompt": "a fox"})
        document = (await gateway.http.get("/openapi.json")).json()
    assert done["state"] == "success", done
    schemas = document["components"]["schemas"]  # one input schema per mode, each its own
    assert schemas["ComfyUIUpscaleInput"]["properties"]["mode"]["enum"] == ["upscale"]
    assert schemas["ComfyUIWorkflowInput"]["properties"]["seed"]["type"] == "integer"
    refs = re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(document))
    assert refs
    assert all(name in schemas for name in refs)
