"""The worker pool with real providers, a real store and real files; no mocks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest

from gengate.domain.catalogue import Catalogue, ModelSpec
from gengate.domain.clock import now_ms
from gengate.domain.files import OutputFile
from gengate.domain.ids import new_task_id
from gengate.domain.inputs import EchoInput
from gengate.domain.states import TaskState
from gengate.domain.task import Task
from gengate.files.local import LocalFileStore
from gengate.files.signing import UrlSigner
from gengate.providers.base import Provider, RunContext
from gengate.providers.demo import demo_providers
from gengate.store.sqlite import SQLiteStore
from gengate.worker.pool import WorkerPool


@dataclass
class FunctionProvider:
    """A provider whose run is a plain function: the whole test double."""

    fn: Callable[[dict[str, Any], RunContext], Any]
    inputs: Mapping[str, type[msgspec.Struct]] = msgspec.field(default_factory=lambda: {"echo": EchoInput})

    async def run(self, input: dict[str, Any], ctx: RunContext) -> Sequence[OutputFile]:
        result = self.fn(input, ctx)
        if asyncio.iscoroutine(result):
            result = await result
        return list(result)


def raise_boom(_input: dict[str, Any], _ctx: RunContext) -> list[OutputFile]:
    raise RuntimeError("boom")


async def relay_like(_input: dict[str, Any], ctx: RunContext) -> list[OutputFile]:
    ctx.on_upstream("up_42", "trace_up")
    await asyncio.sleep(0.05)  # the reference is written while the task still runs
    return [OutputFile(ctx.output_dir / "r.json", "application/json", b"{}")]


async def sleep_forever(_input: dict[str, Any], _ctx: RunContext) -> list[OutputFile]:
    await asyncio.sleep(3600)
    return []


async def swallow_a_cancel(_input: dict[str, Any], ctx: RunContext) -> list[OutputFile]:
    """Never looks at `ctx.cancel`, swallows the stop, and returns as if nothing happened."""
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(3600)
    await asyncio.sleep(0.01)
    return [OutputFile(ctx.output_dir / "r.json", "application/json", b"{}")]


@dataclass
class Rig:
    store: SQLiteStore
    pool: WorkerPool

    async def submit(self, model: str, *, callback_url: str | None = None, **input_: Any) -> Task:
        task = Task(
            id=new_task_id(),
            key_id="key_1",
            model=model,
            mode="echo",
            state=TaskState.PENDING,
            input_json=orjson.dumps(
                {"mode": "echo", "prompt": None, "data": None, "duration_ms": 0, "fail_code": None, **input_}
            ).decode(),
            request_json="{}",
            create_time=now_ms(),
            callback_url=callback_url,
        )
        await self.store.insert_task(task)
        return task

    async def until_done(self, task: Task, wait_s: float = 5.0) -> Task:
        async with asyncio.timeout(wait_s):
            while True:
                current = await self.store.get_task(task.id)
                assert current is not None
                if current.state.is_terminal():
                    return current
                await asyncio.sleep(0.01)


def spec(model: str, provider: str, **kw: Any) -> ModelSpec:
    return ModelSpec(id=model, inputs={"echo": EchoInput}, provider=provider, **kw)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    providers: dict[str, Provider] = {
        **demo_providers(),
        "boom": FunctionProvider(raise_boom),
        "forever": FunctionProvider(sleep_forever),
        "relay": FunctionProvider(relay_like),
        "stubborn": FunctionProvider(swallow_a_cancel),
    }
    catalogue = Catalogue(
        {
            "echo": spec("echo", "demo-echo"),
            "slow": spec("slow", "demo-echo", timeout_s=0.2),
            "boom": spec("boom", "boom"),
            "forever": spec("forever", "forever", concurrency=1),
            "flaky": spec("flaky", "demo-echo", max_attempts=3, retry_backoff_s=0.05),
            "capped": spec("capped", "demo-echo", concurrency=4, max_running=1),
            "relay": spec("relay", "relay"),
            "stubborn": spec("stubborn", "stubborn"),
            "deaf": spec("deaf", "stubborn", timeout_s=0.1),
        }
    )
    async with open_rig(tmp_path, providers, catalogue) as opened:
        yield opened


@contextlib.asynccontextmanager
async def open_rig(
    tmp_path: Path, providers: dict[str, Provider], catalogue: Catalogue
) -> AsyncIterator[Rig]:
    """A SQLite store, local files and a started worker pool of four slots over `providers`."""
    store = SQLiteStore(tmp_path / "db.sqlite")
    await store.open()
    files = LocalFileStore(tmp_path / "files", "http://test", UrlSigner(b"secret"))
    pool = WorkerPool(store, store.hub, catalogue, providers, files, slots=4, lease_ms=600)
    await pool.start()
    yield Rig(store, pool)
    await pool.stop(grace_s=0.1)
    await store.close()


async def test_runs_a_task_to_success_with_its_files(rig: Rig) -> None:
    task = await rig.submit("echo", prompt="hello")
    done = await rig.until_done(task)
    assert done.state is TaskState.SUCCESS
    assert [f.name for f in done.files] == ["result.json"]
    assert done.cost_time is not None
    assert done.cost_time >= 0


async def test_progress_is_recorded_while_running(rig: Rig) -> None:
    task = await rig.submit("echo", duration_ms=400)
    seen: set[int] = set()
    async with asyncio.timeout(5):
        while (current := await rig.store.get_task(task.id)) and not current.state.is_terminal():
            if current.progress is not None:
                seen.add(current.progress)
            await asyncio.sleep(0.01)
    assert seen
    assert min(seen) < 100


async def test_model_timeout_fails_the_task(rig: Rig) -> None:
    done = await rig.until_done(await rig.submit("slow", duration_ms=5000))
    assert done.state is TaskState.FAILED
    assert done.fail_code == "TIMEOUT"


async def test_provider_exception_is_an_internal_error_not_a_lost_task(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    done = await rig.until_done(await rig.submit("boom"))
    assert done.state is TaskState.FAILED
    assert done.fail_code == "INTERNAL_ERROR"
    assert "boom" not in (done.fail_msg or "")  # no internals to the client
    assert any("boom" in r.getMessage() or r.exc_info for r in caplog.records)


async def test_requested_failure_code_is_recorded(rig: Rig) -> None:
    done = await rig.until_done(await rig.submit("echo", fail_code="CONTENT_VIOLATION"))
    assert (done.state, done.fail_code) == (TaskState.FAILED, "CONTENT_VIOLATION")


async def test_model_concurrency_is_respected(rig: Rig) -> None:
    first = await rig.submit("forever")
    second = await rig.submit("forever")
    await asyncio.sleep(0.3)
    states = {(await rig.store.get_task(t.id)).state for t in (first, second)}  # type: ignore[union-attr]
    assert states == {TaskState.PROCESSING, TaskState.PENDING}


async def test_lease_is_renewed_while_a_task_runs(rig: Rig) -> None:
    task = await rig.submit("forever")
    await asyncio.sleep(1.5)  # more than two leases of 600 ms
    current = await rig.store.get_task(task.id)
    assert current is not None
    assert current.state is TaskState.PROCESSING
    assert current.attempts == 1


async def test_stop_hands_running_tasks_back_to_the_queue(rig: Rig) -> None:
    task = await rig.submit("forever")
    async with asyncio.timeout(5):
        while (await rig.store.get_task(task.id)).state is TaskState.PENDING:  # type: ignore[union-attr]
            await asyncio.sleep(0.01)
    await rig.pool.stop(grace_s=0.1)
    current = await rig.store.get_task(task.id)
    assert current is not None
    assert current.state is TaskState.PENDING


async def test_transient_failure_is_retried_with_backoff_then_succeeds(rig: Rig) -> None:
    done = await rig.until_done(await rig.submit("flaky", fail_attempts=2))
    assert done.state is TaskState.SUCCESS
    assert done.attempts == 3


async def test_only_a_first_attempt_saves_as_the_first(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file store may skip looking for an earlier attempt's files on a first attempt only."""
    saves: list[bool] = []
    save = rig.pool.files.save

    async def recording(task_id: str, outputs: Any, *, first_attempt: bool = False) -> Any:
        saves.append(first_attempt)
        return await save(task_id, outputs, first_attempt=first_attempt)

    monkeypatch.setattr(rig.pool.files, "save", recording)
    assert (await rig.until_done(await rig.submit("echo"))).state is TaskState.SUCCESS
    assert (await rig.until_done(await rig.submit("flaky", fail_attempts=2))).attempts == 3
    assert saves == [True, False]


async def test_transient_failure_past_max_attempts_fails_the_task(rig: Rig) -> None:
    done = await rig.until_done(await rig.submit("flaky", fail_attempts=5))
    assert done.state is TaskState.FAILED
    assert done.fail_code == "PROVIDER_ERROR"
    assert done.attempts == 3


async def test_permanent_failure_is_not_retried(rig: Rig) -> None:
    done = await rig.until_done(await rig.submit("flaky", fail_code="CONTENT_VIOLATION"))
    assert done.fail_code == "CONTENT_VIOLATION"
    assert done.attempts == 1


async def test_cluster_cap_bounds_running_tasks_of_a_model(rig: Rig) -> None:
    tasks = [await rig.submit("capped", duration_ms=150) for _ in range(3)]
    most = 0
    async with asyncio.timeout(10):
        while True:
            states = [t.state for t in [await rig.store.get_task(t.id) for t in tasks] if t is not None]
            most = max(most, states.count(TaskState.PROCESSING))
            if all(state.is_terminal() for state in states):
                break
            await asyncio.sleep(0.01)
    assert most == 1


async def test_upstream_reference_of_a_relayed_task_is_kept(rig: Rig) -> None:
    done = await rig.until_done(await rig.submit("relay"))
    assert done.state is TaskState.SUCCESS
    assert done.upstream is not None
    assert orjson.loads(done.upstream) == {"provider": "relay", "taskId": "up_42", "traceId": "trace_up"}


async def test_a_provider_that_ignores_a_cancel_is_stopped_after_the_grace_period(rig: Rig) -> None:
    task = await rig.submit("forever")
    async with asyncio.timeout(5):
        while (current := await rig.store.get_task(task.id)) and current.state is TaskState.PENDING:
            await asyncio.sleep(0.01)
    await rig.store.cancel(task.id)  # `sleep_forever` never looks at ctx.cancel
    done = await rig.until_done(task, wait_s=15)
    assert done.state is TaskState.FAILED
    assert done.fail_code == "CANCELED"
    # The slot is given back when the run's own task ends, a moment after the ending commit
    # that `until_done` saw: wait for it (a slot never given back fails here).
    async with asyncio.timeout(5):
        while rig.pool.busy:
            await asyncio.sleep(0.01)


async def test_a_provider_that_swallows_the_stop_still_ends_canceled(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stop is a cancel of the run's own task; swallowed, it is taken back, and the run
    goes on to record the client's cancel and give its slot back."""
    monkeypatch.setattr("gengate.worker.run.CANCEL_GRACE_S", 0.05)
    task = await rig.submit("stubborn")
    async with asyncio.timeout(5):
        while (current := await rig.store.get_task(task.id)) and current.state is TaskState.PENDING:
            await asyncio.sleep(0.01)
    await rig.store.cancel(task.id)
    done = await rig.until_done(task)
    assert (done.state, done.fail_code) == (TaskState.FAILED, "CANCELED")
    async with asyncio.timeout(5):
        while rig.pool.busy:
            await asyncio.sleep(0.01)
    assert (await rig.until_done(await rig.submit("echo"))).state is TaskState.SUCCESS


async def test_a_provider_that_swallows_its_timeout_still_times_out(rig: Rig) -> None:
    """The model's timeout cancels the run; a provider that catches that and returns anyway has
    still overrun its time."""
    done = await rig.until_done(await rig.submit("deaf"))
    assert (done.state, done.fail_code) == (TaskState.FAILED, "TIMEOUT")


async def test_tasks_one_at_a_time_take_about_one_claim_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim that took less than it asked for found the queue empty: neither claiming again at
    once nor at the end of each run (which made three claims a task at a moderate rate)."""
    catalogue = Catalogue({"echo": spec("echo", "demo-echo")})
    async with open_rig(tmp_path, demo_providers(), catalogue) as rig:
        claims: list[int] = []
        claim = rig.store.claim

        async def counting(*args: Any, **kwargs: Any) -> Any:
            found = await claim(*args, **kwargs)
            claims.append(len(found))
            return found

        monkeypatch.setattr(rig.store, "claim", counting)
        for _ in range(10):
            assert (await rig.until_done(await rig.submit("echo"))).state is TaskState.SUCCESS
        await asyncio.sleep(0.05)
    assert sum(claims) == 10
    assert len(claims) <= 12  # one each, give or take a wake-up that raced a submit


async def test_a_model_at_its_concurrency_is_claimed_again_when_a_run_ends(tmp_path: Path) -> None:
    """Work left behind because a model was at its concurrency is taken as soon as a slot frees,
    not at the slow poll."""
    catalogue = Catalogue({"one": spec("one", "demo-echo", concurrency=1)})
    async with open_rig(tmp_path, demo_providers(), catalogue) as rig:
        rig.pool.idle_poll_s = 30.0
        tasks = [await rig.submit("one", duration_ms=50) for _ in range(3)]
        async with asyncio.timeout(5):
            for task in tasks:
                assert (await rig.until_done(task)).state is TaskState.SUCCESS
