"""Retention: files of tasks past their TTL go; younger ones stay."""

from __future__ import annotations

import asyncio
from pathlib import Path

from local_urls import served

from gengate.domain.clock import now_ms
from gengate.domain.endings import Succeeded
from gengate.domain.files import OutputFile
from gengate.domain.ids import new_task_id
from gengate.domain.states import TaskState
from gengate.domain.task import Task
from gengate.files.cleanup import remove_expired
from gengate.files.local import LocalFileStore
from gengate.files.signing import UrlSigner
from gengate.store.sqlite import SQLiteStore


async def finished_task(store: SQLiteStore, files: LocalFileStore) -> str:
    task_id = new_task_id()
    await store.insert_task(
        Task(
            id=task_id,
            key_id="key_1",
            model="m",
            mode="echo",
            state=TaskState.PENDING,
            input_json="{}",
            request_json="{}",
            create_time=now_ms(),
        )
    )
    (claim,) = await store.claim({"m": 1}, "w", 1, 60_000)
    staging = files.staging_dir(task_id, claim.attempt)
    (staging / "0.txt").write_text("result")
    small = OutputFile(Path("r.json"), "application/json", data=b"{}")  # kept as a row
    saved = await files.save(task_id, [OutputFile(staging / "0.txt", "text/plain"), small])
    await store.finish(task_id, "w", claim.attempt, Succeeded(saved))
    return task_id


def names_served(files: LocalFileStore, task_id: str) -> set[str]:
    """The names of the task's results that `/files/` would still serve."""
    return {name for name in ("0.txt", "r.json") if served(files, task_id, name, now_ms()) is not None}


async def test_remove_expired_deletes_only_old_results(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "db.sqlite")
    await store.open()
    files = LocalFileStore(tmp_path / "files", "http://test", UrlSigner(b"k"))
    try:
        old = await finished_task(store, files)
        await asyncio.sleep(0.6)
        young = await finished_task(store, files)
        assert await remove_expired(store, files, ttl_ms=300) == 1
        assert names_served(files, old) == set()
        assert names_served(files, young) == {"0.txt", "r.json"}
        assert files.path_of(young, "0.txt").read_text() == "result"
        assert await remove_expired(store, files, ttl_ms=300) == 0  # marked, not found again
        await asyncio.sleep(0.4)
        assert await remove_expired(store, files, ttl_ms=300) == 1
        assert names_served(files, young) == set()
    finally:
        await files.close()
        await store.close()
