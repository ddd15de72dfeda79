"""What the parts of the PostgreSQL store share: the pool, the error edge, command tags."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from gengate.store.edge import unavailable_on
from gengate.store.notify import ChangeHub
from gengate.store.postgres_notify import CANCEL, DELIVERIES, TASK, WORK, PgNotifier

Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

#: Errors that mean "the database cannot answer now", as opposed to a bug in a statement.
UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
)

unavailable_on_error = unavailable_on(*UNAVAILABLE)


def rowcount(status: str) -> int:
    """Rows a statement changed, from asyncpg's command tag (`UPDATE 1`)."""
    return int(status.rsplit(" ", 1)[-1])


class PgBase:
    """The pool and the wake-ups every part of the store writes through."""

    _pool: asyncpg.Pool[asyncpg.Record] | None = None
    hub: ChangeHub
    _notifier: PgNotifier

    @property
    def pool(self) -> asyncpg.Pool[asyncpg.Record]:
        assert self._pool is not None, "store not open"
        return self._pool

    def _announce(
        self,
        *,
        tasks: Sequence[str] = (),
        work: Sequence[str] = (),
        cancel: Sequence[str] = (),
        deliveries: bool = False,
    ) -> None:
        """After a commit: wake this process's waiters now, and the other processes' soon."""
        for task_id in tasks:
            self.hub.task_changed(task_id)
            self._notifier.publish(TASK, task_id)
        if work:
            self.hub.work_added(work)
            for model in work:
                self._notifier.publish(WORK, model)
        for task_id in cancel:
            self.hub.cancel_requested(task_id)
            self._notifier.publish(CANCEL, task_id)
        if deliveries:
            self.hub.deliveries_added()
            self._notifier.publish(DELIVERIES)
