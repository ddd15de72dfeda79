"""A provider's log lines and plain output reach the task: in order, in batches, bounded, and all
of them in the store before the task is seen to end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from test_worker_pool import FunctionProvider, Rig, open_rig, spec

from gengate.domain.catalogue import Catalogue
from gengate.domain.files import OutputFile
from gengate.domain.states import TaskState
from gengate.providers.base import Provider, RunContext
from gengate.worker import run_log


def _file(ctx: RunContext) -> list[OutputFile]:
    return [OutputFile(ctx.output_dir / "r.json", "application/json", b"{}")]


async def chatty(_input: dict[str, Any], ctx: RunContext) -> list[OutputFile]:
    ctx.log("loading weights\n")
    await asyncio.sleep(0.02)  # a first batch is written while the run goes on
    ctx.log("step 1/2\nstep 2/2")
    ctx.output({"score": 0.25, "label": "cat"})
    ctx.log("done")  # the last lines arrive just before the end: still kept
    return _file(ctx)


async def floods(_input: dict[str, Any], ctx: RunContext) -> list[OutputFile]:
    for i in range(run_log.MAX_LINES + 10):
        ctx.log(f"line {i}")
    ctx.log("x" * (run_log.MAX_LINE_CHARS + 100))  # dropped: over the line cap already
    return _file(ctx)


async def long_line(_input: dict[str, Any], ctx: RunContext) -> list[OutputFile]:
    ctx.log("y" * (run_log.MAX_LINE_CHARS + 100))
    return _file(ctx)


async def huge_output(_input: dict[str, Any], ctx: RunContext) -> list[OutputFile]:
    ctx.output("z" * (run_log.MAX_OUTPUT_BYTES + 1))
    return _file(ctx)


async def text_only(_input: dict[str, Any], ctx: RunContext) -> list[OutputFile]:
    ctx.output("a caption")
    return []


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    providers: dict[str, Provider] = {
        name: FunctionProvider(fn)
        for name, fn in {
            "chatty": chatty,
            "floods": floods,
            "long_line": long_line,
            "huge_output": huge_output,
            "text_only": text_only,
        }.items()
    }
    async with open_rig(
        tmp_path, providers, Catalogue({name: spec(name, name) for name in providers})
    ) as opened:
        yield opened


async def test_log_lines_and_output_are_kept_before_the_task_ends(rig: Rig) -> None:
    done = await rig.until_done(await rig.submit("chatty"))
    assert done.state is TaskState.SUCCESS
    assert done.output_json == '{"score":0.25,"label":"cat"}'
    logs = await rig.store.task_logs(done.id)
    assert [log.line for log in logs] == ["loading weights", "step 1/2", "step 2/2", "done"]
    assert {log.attempt for log in logs} == {1}
    assert [log.at for log in logs] == sorted(log.at for log in logs)


async def test_a_flood_of_lines_is_cut_with_a_note(rig: Rig) -> None:
    done = await rig.until_done(await rig.submit("floods"))
    assert done.state is TaskState.SUCCESS
    lines = [log.line for log in await rig.store.task_logs(done.id)]
    assert len(lines) == run_log.MAX_LINES + 1
    assert lines[-2] == f"line {run_log.MAX_LINES - 1}"
    assert lines[-1].startswith("[gengate] 11 more log lines were not kept")


async def test_a_long_line_is_cut(rig: Rig) -> None:
    done = await rig.until_done(await rig.submit("long_line"))
    (log,) = await rig.store.task_logs(done.id)
    assert log.line == "y" * run_log.MAX_LINE_CHARS


async def test_output_larger_than_the_bound_fails_the_task_clearly(rig: Rig) -> None:
    done = await rig.until_done(await rig.submit("huge_output"))
    assert done.state is TaskState.FAILED
    assert done.fail_code == "PROVIDER_ERROR"
    assert "output values" in (done.fail_msg or "")


async def test_a_model_may_answer_with_values_and_no_files(rig: Rig) -> None:
    done = await rig.until_done(await rig.submit("text_only"))
    assert done.state is TaskState.SUCCESS
    assert done.files == ()
    assert done.output_json == '"a caption"'
