"""In-process wake-ups: who waits on a task, and workers waiting for work.

Waiting costs a future in a dict and no CPU; a change wakes exactly the waiters of that
task. The SQLite store calls it after each commit; a networked store feeds it from its
own notifications (PostgreSQL LISTEN/NOTIFY).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable


class ChangeHub:
    def __init__(self) -> None:
        self._task_waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._work = asyncio.Event()
        self._deliveries = asyncio.Event()
        self._cancel_listeners: list[Callable[[str], None]] = []

    # -- tasks ---------------------------------------------------------------
    def task_changed(self, task_id: str) -> None:
        waiters = self._task_waiters.pop(task_id, None)
        if waiters:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def wake_all_tasks(self) -> None:
        """Every waiter re-reads its task: after changes may have been missed (a lost listener)."""
        for task_id in list(self._task_waiters):
            self.task_changed(task_id)

    def watch(self, task_id: str) -> asyncio.Future[None]:
        """Register interest before reading the task, so no change slips between read and wait."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task_waiters.setdefault(task_id, []).append(waiter)
        return waiter

    def unwatch(self, task_id: str, waiter: asyncio.Future[None]) -> None:
        waiters = self._task_waiters.get(task_id)
        if waiters is None:
            return
        try:
            waiters.remove(waiter)
        except ValueError:
            return
        if not waiters:
            del self._task_waiters[task_id]

    # -- cancel ----------------------------------------------------------------
    def on_cancel(self, listener: Callable[[str], None]) -> None:
        """Workers in this process learn at once that a running task was canceled."""
        self._cancel_listeners.append(listener)

    def cancel_requested(self, task_id: str) -> None:
        for listener in self._cancel_listeners:
            listener(task_id)

    # -- callbacks -------------------------------------------------------------
    def deliveries_added(self) -> None:
        self._deliveries.set()

    async def wait_deliveries(self, wait_s: float) -> None:
        """Return when a callback may be due, or after `wait_s`."""
        try:
            await asyncio.wait_for(self._deliveries.wait(), max(wait_s, 0))
        except TimeoutError:
            return
        finally:
            self._deliveries.clear()

    # -- work ----------------------------------------------------------------
    def work_added(self, _models: Iterable[str] = ()) -> None:
        self._work.set()

    async def wait_work(self, wait_s: float) -> None:
        """Return when work may be there, or after `wait_s`: the slow poll is the safety net."""
        try:
            await asyncio.wait_for(self._work.wait(), wait_s)
        except TimeoutError:
            return
        finally:
            self._work.clear()
