"""Fixtures of the ComfyUI provider tests: fake ComfyUI servers, a workflow file, a run's context."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from comfy_support import BIND, Run

from comfyui_fake import FakeComfy, text_to_image_workflow
from gengate.providers.base import RunContext
from gengate.providers.comfyui.provider import ComfyModel, ComfyPool, parse_options


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeComfy]:
    with FakeComfy(tmp_path / "comfy-a") as server:
        yield server


@pytest.fixture
def fake_b(tmp_path: Path) -> Iterator[FakeComfy]:
    with FakeComfy(tmp_path / "comfy-b") as server:
        yield server


@pytest.fixture
def workflow_file(tmp_path: Path) -> Path:
    path = tmp_path / "workflows" / "t2i.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(text_to_image_workflow()))
    return path


@pytest.fixture
async def comfy(fake: FakeComfy, workflow_file: Path) -> AsyncIterator[Callable[..., ComfyModel]]:
    """Makes a model of the text-to-image workflow on the given servers (default: `fake`)."""
    pools: list[ComfyPool] = []

    def make(
        *urls: str, bind: dict[str, str] | None = None, graph: dict[str, Any] | None = None, **options: Any
    ) -> ComfyModel:
        settings = {"urls": list(urls) or [fake.url], "poll_s": 0.05, "health_s": 0.2, **options}
        pool = ComfyPool("comfy", parse_options(settings), timeout_s=10, breaker_failures=3)
        pools.append(pool)
        path = workflow_file
        if graph is not None:
            path = workflow_file.with_name(f"graph-{len(pools)}.json")
            path.write_text(json.dumps(graph))
        return pool.link(path, bind or BIND, None)

    yield make
    for pool in pools:
        await pool.aclose()


@pytest.fixture
def run_context(tmp_path: Path) -> Callable[[str], Run]:
    def make(task_id: str = "task-1") -> Run:
        folder = tmp_path / "out" / task_id
        folder.mkdir(parents=True)
        run = Run(RunContext(task_id=task_id, model="sdxl-comfy", mode="workflow", output_dir=folder))
        run.ctx.on_progress = run.progress.append
        run.ctx.on_log = run.logs.append
        run.ctx.on_upstream = lambda upstream_id, _trace: run.upstream.append(upstream_id)
        return run

    return make
