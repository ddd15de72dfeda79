"""A ComfyUI workflow run against a ComfyUI-compatible server: outputs, progress, logs, errors."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable

import pytest
from comfy_support import Run
from PIL import Image

from comfyui_fake import FakeComfy, image_to_image_workflow
from gengate.providers.base import ProviderFailure
from gengate.providers.comfyui.provider import ComfyModel


async def test_a_run_fills_the_graph_and_brings_back_the_saved_png(
    fake: FakeComfy, comfy: Callable[..., ComfyModel], run_context: Callable[..., Run]
) -> None:
    model = comfy()
    run = run_context()
    outputs = await model.run(
        {"mode": "workflow", "prompt": "a red fox", "seed": 7, "width": 40, "height": 24}, run.ctx
    )

    assert len(outputs) == 1
    assert outputs[0].content_type == "image/png"
    with Image.open(outputs[0].path) as image:
        assert image.size == (40, 24)
        sent = json.loads(image.text["prompt"])  # the graph as the server ran it
    assert sent["6"]["inputs"]["text"] == "a red fox"
    assert sent["3"]["inputs"]["seed"] == 7
    assert sent["7"]["inputs"]["text"] == "text, watermark"  # not given: the graph's own value
    body = fake.prompts[-1]
    assert body["prompt_id"] == run.upstream[0]  # our own id, announced to the worker
    assert body["client_id"]
    assert body["client_id"] != body["prompt_id"]


async def test_progress_and_logs_follow_the_websocket(
    fake: FakeComfy, comfy: Callable[..., ComfyModel], run_context: Callable[..., Run]
) -> None:
    run = run_context()
    await comfy().run({"mode": "workflow", "steps": 4}, run.ctx)

    assert run.progress == [25, 50, 75, 99, 100]
    text = "\n".join(run.logs)
    assert f"queued as prompt {run.upstream[0]}" in text
    assert fake.url not in text  # the logs reach clients: no address of the operator's network
    assert "node 3 (KSampler) running" in text
    assert "node 3 (KSampler): sampled 4 steps" in text  # a node's text frame (binary type 3)


async def test_a_refused_bound_input_is_invalid_input_with_the_nodes_words(
    fake: FakeComfy, comfy: Callable[..., ComfyModel], run_context: Callable[..., Run]
) -> None:
    with pytest.raises(ProviderFailure) as failed:
        await comfy().run({"mode": "workflow", "width": 99999}, run_context().ctx)

    assert failed.value.fail_code == "INVALID_INPUT"
    assert not failed.value.transient
    assert "node 5 (EmptyLatentImage): Value 99999 bigger than max of 16384: width" in failed.value.message


async def test_a_refusal_about_the_workflow_itself_is_the_servers_fault(
    fake: FakeComfy, comfy: Callable[..., ComfyModel], run_context: Callable[..., Run]
) -> None:
    """A model file this server lacks is no fault of the client: another server may have it."""
    model = comfy(bind={"prompt": "6.inputs.text"})
    model.workflow.graph["4"]["inputs"]["ckpt_name"] = "missing.safetensors"
    with pytest.raises(ProviderFailure) as failed:
        await model.run({"mode": "workflow"}, run_context().ctx)

    assert (failed.value.fail_code, failed.value.transient) == ("PROVIDER_ERROR", True)
    assert "Value not in list" in failed.value.message


async def test_an_unknown_field_is_invalid_input(
    comfy: Callable[..., ComfyModel], run_context: Callable[..., Run]
) -> None:
    with pytest.raises(ProviderFailure) as failed:
        await comfy().run({"mode": "workflow", "guidance": 3}, run_context().ctx)
    assert failed.value.fail_code == "INVALID_INPUT"
    assert "guidance" in failed.value.message


async def test_a_failing_node_fails_the_run(
    fake: FakeComfy, comfy: Callable[..., ComfyModel], run_context: Callable[..., Run]
) -> None:
    fake.fail_classes.add("VAEDecode")
    run = run_context()
    with pytest.raises(ProviderFailure) as failed:
        await comfy().run({"mode": "workflow"}, run.ctx)

    assert failed.value.fail_code == "PROVIDER_ERROR"
    assert (
        "node 8 (VAEDecode) raised RuntimeError: VAEDecode failed as the test asked" in failed.value.message
    )
    assert any("VAEDecode failed" in line for line in run.logs)


async def test_without_the_websocket_the_history_still_brings_the_result(
    fake: FakeComfy, comfy: Callable[..., ComfyModel], run_context: Callable[..., Run]
) -> None:
    """A message over `max_message_bytes` (the preview frames) closes the socket: polling takes over."""
    outputs = await comfy(max_message_bytes=300).run({"mode": "workflow", "width": 32}, run_context().ctx)

    with Image.open(outputs[0].path) as image:
        assert image.size == (32, 48)
    assert ("GET", "/history") in fake.requests


async def test_a_server_whose_websocket_is_refused_is_followed_through_its_history(
    fake: FakeComfy, comfy: Callable[..., ComfyModel], run_context: Callable[..., Run]
) -> None:
    fake.websocket_ok = False
    run = run_context()
    outputs = await comfy().run({"mode": "workflow"}, run.ctx)

    assert len(outputs) == 1
    assert run.progress == [100]  # no websocket, no steps


async def test_an_input_image_is_uploaded_and_bound(
    fake: FakeComfy, comfy: Callable[..., ComfyModel], run_context: Callable[..., Run]
) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 30), (0, 0, 255)).save(buffer, format="PNG")
    (fake.input_dir / "example.png").write_bytes(buffer.getvalue())
    bind = {"image_url": "10.inputs.image", "prompt": "6.inputs.text"}
    model = comfy(bind=bind, graph=image_to_image_workflow())
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    outputs = await model.run({"mode": "workflow", "image_url": url}, run_context().ctx)

    uploaded = fake.prompts[-1]["prompt"]["10"]["inputs"]["image"]
    assert uploaded.startswith("gengate-")
    assert uploaded.endswith(".png")
    assert (fake.input_dir / uploaded).read_bytes() == buffer.getvalue()
    with Image.open(outputs[0].path) as image:
        assert image.size == (20, 30)  # the picture went through the graph


async def test_an_input_image_url_goes_through_the_url_guard(
    fake: FakeComfy, comfy: Callable[..., ComfyModel], run_context: Callable[..., Run]
) -> None:
    (fake.input_dir / "example.png").write_bytes(b"")
    model = comfy(bind={"image_url": "10.inputs.image"}, graph=image_to_image_workflow())
    with pytest.raises(ProviderFailure) as failed:
        await model.run(
            {"mode": "workflow", "image_url": fake.url + "/view?filename=x.png"}, run_context().ctx
        )

    assert failed.value.fail_code == "INVALID_INPUT"
    assert "loopback" in failed.value.message
    assert fake.prompts == []
