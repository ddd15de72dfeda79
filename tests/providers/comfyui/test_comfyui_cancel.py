"""Cancel and timeout take the prompt off the ComfyUI server, running or queued."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from comfy_support import Run, eventually

from comfyui_fake import FakeComfy
from gengate.providers.base import ProviderFailure
from gengate.providers.comfyui.provider import ComfyModel


def _status(fake: FakeComfy, prompt_id: str) -> str:
    return str(fake.history[prompt_id]["status"]["status_str"])


def _events(fake: FakeComfy, prompt_id: str) -> list[str]:
    return [event for event, _data in fake.history[prompt_id]["status"]["messages"]]


async def _canceled(task: asyncio.Task[object]) -> ProviderFailure:
    with pytest.raises(ProviderFailure) as failed:
        await task
    return failed.value


async def test_cancel_of_a_running_prompt_interrupts_it_and_frees_the_server(
    fake: FakeComfy, comfy: Callable[..., ComfyModel], run_context: Callable[..., Run]
) -> None:
    model = comfy()
    fake.hold()
    run = run_context("t1")
    task = asyncio.create_task(model.run({"mode": "workflow"}, run.ctx))
    await eventually(lambda: bool(run.upstream) and fake.running_ids() == run.upstream)

    run.ctx.cancel.set()
    failure = await _canceled(task)

    assert failure.fail_code == "CANCELED"
    prompt_id = run.upstream[0]
    await eventually(lambda: prompt_id in fake.history)
    assert _status(fake, prompt_id) == "error"
    assert "execution_interrupted" in _events(fake, prompt_id)
    assert ("POST", "/interrupt") in fake.requests
    fake.release()
    assert await model.run({"mode": "workflow"}, run_context("t2").ctx)  # the server runs the next one


async def test_cancel_of_a_queued_prompt_deletes_it_from_the_servers_queue(
    fake: FakeComfy, comfy: Callable[..., ComfyModel], run_context: Callable[..., Run]
) -> None:
    model = comfy(queue_ahead=1)
    fake.hold()
    first, second = run_context("t1"), run_context("t2")
    running = asyncio.create_task(model.run({"mode": "workflow"}, first.ctx))
    await eventually(lambda: bool(first.upstream) and fake.running_ids() == first.upstream)
    queued = asyncio.create_task(model.run({"mode": "workflow"}, second.ctx))
    await eventually(lambda: bool(second.upstream) and fake.pending_ids() == second.upstream)

    second.ctx.cancel.set()
    failure = await _canceled(queued)

    assert failure.fail_code == "CANCELED"
    assert fake.pending_ids() == []
    assert ("POST", "/interrupt") not in fake.requests  # the running prompt is someone else's
    fake.release()
    assert len(await running) == 1
    assert second.upstream[0] not in fake.history  # it never ran


async def test_a_server_with_the_jobs_api_is_canceled_through_it(
    fake: FakeComfy, comfy: Callable[..., ComfyModel], run_context: Callable[..., Run]
) -> None:
    fake.jobs_api = True
    fake.hold()
    run = run_context()
    task = asyncio.create_task(comfy().run({"mode": "workflow"}, run.ctx))
    await eventually(lambda: bool(run.upstream) and fake.running_ids() == run.upstream)

    run.ctx.cancel.set()
    assert (await _canceled(task)).fail_code == "CANCELED"

    assert ("POST", f"/api/jobs/{run.upstream[0]}/cancel") in fake.requests
    assert ("POST", "/interrupt") not in fake.requests
    await eventually(lambda: run.upstream[0] in fake.history)
    assert "execution_interrupted" in _events(fake, run.upstream[0])


async def test_a_run_stopped_from_outside_takes_its_prompt_off_the_server(
    fake: FakeComfy, comfy: Callable[..., ComfyModel], run_context: Callable[..., Run]
) -> None:
    """The worker cancels the run's task at the model's timeout."""
    fake.hold()
    run = run_context()
    task = asyncio.create_task(comfy().run({"mode": "workflow"}, run.ctx))
    await eventually(lambda: bool(run.upstream) and fake.running_ids() == run.upstream)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    await eventually(lambda: run.upstream[0] in fake.history)
    assert "execution_interrupted" in _events(fake, run.upstream[0])
