"""A cog server's webhook brings the run's logs while it runs, through the gateway's hook route."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import uvicorn
from cog_runs import Run
from starlette.applications import Starlette

from cog_servers import CogServer, free_port
from gengate.api.upstream_hooks import UpstreamHookRoutes
from gengate.providers.cog.provider import CogProvider, parse_cog_options
from gengate.providers.relay.hooks import UpstreamHooks


@pytest.fixture
async def hooks() -> AsyncIterator[UpstreamHooks]:
    """The real hook route (`POST /hooks/upstream/{token}`) served on loopback."""
    port = free_port()
    hooks = UpstreamHooks(b"test secret", f"http://127.0.0.1:{port}")
    app = Starlette(routes=UpstreamHookRoutes(hooks).routes())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    yield hooks
    server.should_exit = True
    await serving


async def test_logs_arrive_while_the_prediction_runs(
    image_server: CogServer, hooks: UpstreamHooks, new_run: Callable[..., Run]
) -> None:
    provider = CogProvider(
        "mycog",
        parse_cog_options({"urls": [image_server.url], "health_interval_s": 0.2}),
        timeout_s=10,
        breaker_failures=3,
        breaker_reset_s=30,
        hooks=hooks,
    )
    run = new_run()
    try:
        job = asyncio.create_task(provider.run({"prompt": "slow", "steps": 40, "step_s": 0.05}, run.ctx))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while not run.logs:
            assert not job.done(), "the run ended before any log arrived"
            assert loop.time() < deadline
            await asyncio.sleep(0.02)
        assert not job.done()
        await job
    finally:
        await provider.aclose()
    assert len(run.logs) > 1  # in pieces as it ran, not all at the end
    assert "step 40/40" not in run.logs[0]
    lines = run.log_text.splitlines()
    assert lines == [f"step {n}/40" for n in range(1, 41)]  # each line once, in order
