"""Retention: remove result files once their URLs have expired."""

from __future__ import annotations

import asyncio
import logging

from gengate.background import report
from gengate.domain.clock import now_ms
from gengate.files.base import FileStore
from gengate.store.base import Store

log = logging.getLogger(__name__)


async def remove_expired(store: Store, files: FileStore, ttl_ms: int, *, batch: int = 500) -> int:
    """Remove the files of tasks completed more than `ttl_ms` ago; returns how many tasks."""
    removed = 0
    while True:
        expired = await store.expired_results(now_ms() - ttl_ms, batch)
        if not expired:
            return removed
        for result in expired:
            await files.delete(result.task_id, result.names)
        await store.mark_files_removed([result.task_id for result in expired])
        removed += len(expired)


async def run_cleanup(store: Store, files: FileStore, ttl_ms: int, interval_s: float) -> None:
    while True:
        try:
            if count := await remove_expired(store, files, ttl_ms):
                log.info("removed the files of %d expired tasks", count)
        except Exception as exc:
            report(log, "result clean-up failed (trying again later)", exc)
        await asyncio.sleep(interval_s)
