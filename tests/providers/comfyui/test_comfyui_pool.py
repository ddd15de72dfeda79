"""Several ComfyUI servers: runs spread, each server holds at most `queue_ahead` of ours in its
queue, an unreachable server is skipped until it answers again."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from comfy_support import Run, eventually

from comfyui_fake import FakeComfy
from gengate.providers.base import ProviderFailure
from gengate.providers.comfyui.provider import ComfyModel, parse_options


def _dead_url() -> tuple[str, int]:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}", port


async def test_runs_spread_over_the_pool_with_at_most_queue_ahead_waiting_on_each_server(
    fake: FakeComfy, fake_b: FakeComfy, comfy: Callable[..., ComfyModel], run_context: Callable[..., Run]
) -> None:
    model = comfy(fake.url, fake_b.url, queue_ahead=1)
    fake.hold()
    fake_b.hold()
    runs = [run_context(f"t{i}") for i in range(6)]
    tasks = [
        asyncio.create_task(model.run({"mode": "workflow", "seed": i}, run.ctx)) for i, run in enumerate(runs)
    ]

    # Each server: one running, one queued; the other two runs wait in gengate.
    await eventually(lambda: len(fake.prompts) == 2 and len(fake_b.prompts) == 2)
    await asyncio.sleep(0.2)  # time for a wrong third prompt to reach a server
    assert (len(fake.prompts), len(fake_b.prompts)) == (2, 2)
    assert (len(fake.pending_ids()), len(fake_b.pending_ids())) == (1, 1)

    fake.release()
    fake_b.release()
    results = await asyncio.gather(*tasks)

    assert all(len(outputs) == 1 for outputs in results)
    assert len(fake.prompts) + len(fake_b.prompts) == 6
    assert len(fake.prompts) >= 2
    assert len(fake_b.prompts) >= 2
    assert fake.max_pending <= 1
    assert fake_b.max_pending <= 1


async def test_queue_ahead_zero_sends_a_server_only_what_it_runs(
    fake: FakeComfy, comfy: Callable[..., ComfyModel], run_context: Callable[..., Run]
) -> None:
    model = comfy(queue_ahead=0)
    tasks = [asyncio.create_task(model.run({"mode": "workflow"}, run_context(f"t{i}").ctx)) for i in range(3)]
    await asyncio.gather(*tasks)
    assert len(fake.prompts) == 3
    assert fake.max_pending == 0


async def test_an_unreachable_server_is_skipped_and_taken_back_once_it_answers(
    tmp_path: Path, fake: FakeComfy, comfy: Callable[..., ComfyModel], run_context: Callable[..., Run]
) -> None:
    dead, port = _dead_url()
    model = comfy(dead, fake.url)
    pool = model.comfy.pool

    for i in range(3):
        assert await model.run({"mode": "workflow"}, run_context(f"t{i}").ctx)

    assert len(fake.prompts) == 3
    states = {state.url: state for state in pool.snapshot()}
    assert states[dead].state == "down"
    assert "unreachable" in (states[dead].reason or "")

    with FakeComfy(tmp_path / "revived", port=port) as revived:
        await eventually(lambda: {s.url: s.state for s in pool.snapshot()}[dead] != "down")
        revived.hold()
        fake.hold()
        tasks = [
            asyncio.create_task(model.run({"mode": "workflow"}, run_context(f"u{i}").ctx)) for i in range(2)
        ]
        await eventually(lambda: len(revived.prompts) == 1)  # the least busy server: the revived one
        revived.release()
        fake.release()
        await asyncio.gather(*tasks)


async def test_a_server_that_dies_mid_run_fails_the_attempt_and_is_skipped_after(
    tmp_path: Path, fake_b: FakeComfy, comfy: Callable[..., ComfyModel], run_context: Callable[..., Run]
) -> None:
    dying = FakeComfy(tmp_path / "dying").start()
    model = comfy(dying.url, fake_b.url)
    dying.hold()
    run = run_context("t1")
    task = asyncio.create_task(model.run({"mode": "workflow"}, run.ctx))
    await eventually(lambda: bool(dying.running_ids()))

    dying.stop(release=False)
    with pytest.raises(ProviderFailure) as failed:
        await task

    assert (failed.value.fail_code, failed.value.transient) == ("PROVIDER_ERROR", True)  # the worker retries
    assert {s.url: s.state for s in model.comfy.pool.snapshot()}[dying.url] == "down"
    assert await model.run({"mode": "workflow"}, run_context("t2").ctx)
    assert len(fake_b.prompts) == 1


def test_urls_from_the_environment_are_comma_separated() -> None:
    options = parse_options({"urls": "http://10.0.0.7:8188/, http://10.0.0.8:8188", "queue_ahead": "2"})
    assert options.urls == ["http://10.0.0.7:8188", "http://10.0.0.8:8188"]
    assert options.queue_ahead == 2
    with pytest.raises(ValueError, match="not an http"):
        parse_options({"urls": ["10.0.0.7:8188"]})
