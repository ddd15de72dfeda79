"""The cog provider's pool against real cog servers: capacity, cancel, lost and broken servers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from cog_runs import Run

from cog_servers import CogServer, free_port, start_cog
from gengate.domain.states import FailCode
from gengate.providers.base import ProviderFailure
from gengate.providers.cog.provider import CogProvider

MakeCog = Callable[..., CogProvider]
SLOW = {"prompt": "slow", "steps": 200, "step_s": 0.05}  # ten seconds: far longer than any test waits


async def until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def health(server: CogServer) -> str:
    return await asyncio.to_thread(server.health)


async def test_three_tasks_at_once_on_one_single_slot_server_all_succeed(
    cog: MakeCog, new_run: Callable[..., Run]
) -> None:
    provider = cog()
    runs = [new_run() for _ in range(3)]
    results = await asyncio.gather(
        *(
            provider.run({"prompt": f"n{i}", "steps": 2, "step_s": 0.05}, run.ctx)
            for i, run in enumerate(runs)
        )
    )
    assert [len(files) for files in results] == [1, 1, 1]
    assert all(run.log_text.splitlines() == ["step 1/2", "step 2/2"] for run in runs)


async def test_a_server_busy_with_someone_elses_prediction_makes_the_task_wait(
    image_server: CogServer, cog: MakeCog, new_run: Callable[..., Run]
) -> None:
    provider = cog()
    await provider.watch.started()
    async with httpx.AsyncClient() as client:  # another client of the same server
        outside = await client.put(
            f"{image_server.url}/predictions/outside",
            json={"input": {"prompt": "x", "steps": 40, "step_s": 0.05}},
            headers={"Prefer": "respond-async"},
        )
        assert outside.status_code == 202
        await until(lambda: image_server.health() == "BUSY")
        job = asyncio.create_task(provider.run({"prompt": "after"}, new_run().ctx))
        # Answered 409, the server counts as full: the run waits in the pool's queue, not in a loop
        # of requests, until the health check finds the server READY again.
        await until(lambda: provider.pool.waiting() == 1)
        assert provider.servers()[0].state == "busy"
        files = await job
    assert len(files) == 1


async def test_cancel_stops_the_prediction_and_frees_the_server(
    image_server: CogServer, cog: MakeCog, new_run: Callable[..., Run]
) -> None:
    provider = cog()
    run = new_run()
    job = asyncio.create_task(provider.run(SLOW, run.ctx))
    await until(lambda: image_server.health() == "BUSY")
    run.ctx.cancel.set()
    with pytest.raises(ProviderFailure) as failure:
        await job
    assert failure.value.fail_code == FailCode.CANCELED
    assert await health(image_server) == "READY"  # stopped, not left running
    assert provider.servers()[0].busy == 0
    files = await provider.run({"prompt": "next"}, new_run().ctx)
    assert len(files) == 1


async def test_a_timeout_cancels_the_prediction_on_the_server(
    image_server: CogServer, cog: MakeCog, new_run: Callable[..., Run]
) -> None:
    provider = cog()
    job = asyncio.create_task(provider.run(SLOW, new_run().ctx))
    await until(lambda: image_server.health() == "BUSY")
    job.cancel()  # what the worker's timeout does
    with pytest.raises(asyncio.CancelledError):
        await job
    assert await health(image_server) == "READY"


async def test_a_server_killed_mid_task_fails_the_attempt_worker_lost_and_the_retry_runs_elsewhere(
    tmp_path: Path, image_server: CogServer, cog: MakeCog, new_run: Callable[..., Run]
) -> None:
    doomed = start_cog("image", tmp_path)
    try:
        provider = cog(doomed.url, image_server.url)
        first = new_run()
        job = asyncio.create_task(provider.run(SLOW, first.ctx))
        await until(lambda: doomed.health() == "BUSY")  # both free: the first server took it
        doomed.kill()
        with pytest.raises(ProviderFailure) as failure:
            await job
        assert failure.value.fail_code == FailCode.WORKER_LOST
        assert failure.value.transient  # the worker tries again while max_attempts allows
        states = {state.url: state for state in provider.servers()}
        assert states[doomed.url].state == "down"
        retry = new_run(attempt=2, task_id=first.ctx.task_id)
        files = await provider.run({"prompt": "again"}, retry.ctx)
        assert len(files) == 1
    finally:
        doomed.stop()


async def test_unreachable_and_failed_servers_are_skipped_and_shown(
    tmp_path: Path, image_server: CogServer, cog: MakeCog, new_run: Callable[..., Run]
) -> None:
    broken = start_cog("broken", tmp_path)
    nowhere = f"http://127.0.0.1:{free_port()}"
    try:
        assert broken.health() == "SETUP_FAILED"
        provider = cog(nowhere, broken.url, image_server.url)
        for _ in range(3):
            assert len(await provider.run({"prompt": "x"}, new_run().ctx)) == 1
        states = {state.url: state for state in provider.servers()}
        assert states[nowhere].state == "down"
        assert (states[nowhere].reason or "").startswith("UNREACHABLE")
        assert states[broken.url].state == "down"
        assert "SETUP_FAILED" in (states[broken.url].reason or "")
        assert "no weights here" in (states[broken.url].reason or "")
        assert states[image_server.url].state == "ready"
    finally:
        broken.stop()


async def test_every_server_down_fails_at_once_transiently(cog: MakeCog, new_run: Callable[..., Run]) -> None:
    provider = cog(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ProviderFailure) as failure:
        await provider.run({"prompt": "x"}, new_run().ctx)
    assert failure.value.transient  # the chain's next provider, or a later attempt
    assert "no server of mycog is available" in failure.value.message


async def test_a_task_waits_for_a_server_still_setting_up(
    tmp_path: Path, cog: MakeCog, new_run: Callable[..., Run]
) -> None:
    starting = start_cog("image", tmp_path, wait=False, setup_s=1.5)
    try:
        await until(lambda: starting.health() == "STARTING")
        provider = cog(starting.url)
        files = await provider.run({"prompt": "x"}, new_run().ctx)
        assert len(files) == 1
    finally:
        starting.stop()
