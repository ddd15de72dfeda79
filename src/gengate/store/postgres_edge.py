"""What the parts of the PostgreSQL store share: the pool, the error edge, command tags."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from gengate.store.edge import unavailable_on

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
        raise NotImplementedError
