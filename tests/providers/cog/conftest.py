"""Fixtures of the cog provider tests: real cog servers (one per module where the tests allow),
providers on them, and a run's context that records what the provider reported."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cog_runs import Run

from cog_servers import CogServer, start_cog
from gengate.providers.base import RunContext
from gengate.providers.cog.provider import CogProvider, parse_cog_options

_TASK_IDS = itertools.count(1)


@pytest.fixture(scope="module")
def image_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CogServer]:
    """The PNG predictor (it publishes its schema), single slot, shared by a module's tests."""
    server = start_cog("image", tmp_path_factory.mktemp("cog"))
    yield server
    server.stop()


@pytest.fixture
async def cog(image_server: CogServer) -> AsyncIterator[Callable[..., CogProvider]]:
    """Makes a provider on the given servers (default: the shared image server)."""
    made: list[CogProvider] = []

    def make(*urls: str, breaker_failures: int = 3, **options: Any) -> CogProvider:
        settings = {"urls": list(urls) or [image_server.url], "health_interval_s": 0.2, **options}
        provider = CogProvider(
            "mycog",
            parse_cog_options(settings),
            timeout_s=10,
            breaker_failures=breaker_failures,
            breaker_reset_s=30,
        )
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


@pytest.fixture
def new_run(tmp_path: Path) -> Callable[..., Run]:
    """A fresh run context (its own task id and output folder) per call."""

    def make(attempt: int = 1, task_id: str | None = None) -> Run:
        task_id = task_id or f"task_cog{next(_TASK_IDS)}"
        folder = tmp_path / f"{task_id}-{attempt}"
        folder.mkdir()
        run = Run(
            RunContext(task_id=task_id, model="my-model", mode="predict", output_dir=folder, attempt=attempt)
        )
        run.ctx.on_log = run.logs.append
        run.ctx.on_output = run.outputs.append
        return run

    return make
