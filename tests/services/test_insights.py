"""The arithmetic of the console's figures over the store's aggregates (a real SQLite store)."""

from __future__ import annotations

from pathlib import Path

from gengate.domain.clock import now_ms
from gengate.domain.endings import Succeeded
from gengate.domain.ids import new_task_id
from gengate.domain.states import TaskState
from gengate.domain.task import Task
from gengate.services.insights import Insights, percentile
from gengate.store.sqlite import SQLiteStore


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7], 0.95) == 7
    values = list(range(1, 101))
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.95) == 95
    assert percentile([10, 20, 30, 40], 0.5) == 20


async def test_model_stats_cover_idle_catalogue_models_and_count_successes(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "db.sqlite")
    await store.open()
    try:
        for _ in range(3):
            task = Task(
                id=new_task_id(),
                key_id="k",
                model="busy",
                mode="echo",
                state=TaskState.PENDING,
                input_json="{}",
                request_json="{}",
                create_time=now_ms(),
            )
            await store.insert_task(task)
        claims = await store.claim({"busy": 2}, "w", 10, 60_000)
        for claim in claims:
            await store.finish(claim.task.id, "w", claim.attempt, Succeeded(()))
        stats = {s.model: s for s in await Insights(store).model_stats(["idle", "busy"], 60_000)}
        assert list(stats) == ["idle", "busy"]
        assert (stats["idle"].pending, stats["idle"].completed, stats["idle"].p50_ms) == (0, 0, None)
        assert (stats["busy"].pending, stats["busy"].completed) == (1, 2)
        assert stats["busy"].throughput == 2.0
        assert stats["busy"].p95_ms is not None
    finally:
        await store.close()
