"""LISTEN/NOTIFY into the hub: wake-ups from every process that shares the database.

One dedicated connection listens on the channels that `PgNotifier`s of other processes send
on (comma-joined ids). When it breaks, it is
opened again with backoff, and everything that waits is woken once, since notifications sent
meanwhile are lost: waiters re-read the store, workers claim, senders look for due callbacks.
The slow polls of workers and senders stay as the safety net behind all of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg

from gengate.background import spawn, stop
from gengate.store.notify import ChangeHub

log = logging.getLogger(__name__)

CHANNELS = ("gengate_task", "gengate_work", "gengate_cancel", "gengate_deliveries")
#: Longest wait between two tries to listen again.
MAX_BACKOFF_S = 5.0


class PgListener:
    def __init__(self, dsn: str, hub: ChangeHub, own_pid: Callable[[], int | None] = lambda: None) -> None:
        self._dsn = dsn
        self._hub = hub
        #: The backend that sends this process's own news: its hub heard them already.
        self._own_pid = own_pid
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    async def start(self) -> None:
        self._task = spawn(self._run(), "listening for changes", name="gengate-pg-listen")
        # The first connection is made before start returns, so no early change is missed.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await self._connected.wait()

    async def stop(self) -> None:
        await stop(self._task)
        self._task = None

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(self._dsn)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("cannot listen for changes (%s); retrying in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            try:
                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                for channel in CHANNELS:
                    await conn.add_listener(channel, self._notified)
                backoff = 0.1
                if self._connected.is_set():
                    self._wake_all()  # reconnected: what was sent meanwhile is lost
                self._connected.set()
                await lost.wait()
                log.warning("lost the connection that listens for changes; listening again")
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("listening for changes failed: %s", exc)
                await asyncio.sleep(backoff)
            finally:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1):
                        await conn.close()

    def _notified(self, _conn: Any, pid: int, channel: str, payload: object) -> None:
        if pid == self._own_pid():
            return
        items = str(payload).split(",")
        if channel == "gengate_task":
            for task_id in items:
                self._hub.task_changed(task_id)
        elif channel == "gengate_work":
            self._hub.work_added(items)
        elif channel == "gengate_cancel":
            for task_id in items:
                self._hub.cancel_requested(task_id)
        else:
            self._hub.deliveries_added()

    def _wake_all(self) -> None:
        self._hub.wake_all_tasks()
        self._hub.work_added()
        self._hub.deliveries_added()
