"""The PostgreSQL driver: an asyncpg pool shared by many API and worker processes.

PostgreSQL carries the distribution: claims take rows with `FOR UPDATE SKIP LOCKED`, fencing is
in each statement's `WHERE`, every write commits before it returns (durable: `synchronous_commit`
stays on), and each change is announced after its commit: to this process's hub at once, and to
the other processes through `PgNotifier` (batched NOTIFY), which their `PgListener`s turn into
wake-ups of their hubs. Concurrent commits share a WAL flush, so group commit comes from
the server. Connection and server errors become `unavailable` (503) at this edge; the pool
replaces broken connections by itself, so the gateway recovers when the server is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import asyncpg
import psycopg

from gengate.domain.clock import now_ms
from gengate.store.notify import ChangeHub
from gengate.store.postgres.edge import (
    UNAVAILABLE,
    Connection,
    connect_failure,
    rowcount,
    unavailable_on_error,
    wait_for_postgres,
)
from gengate.store.postgres.listen import PgListener
from gengate.store.postgres.notify import CANCEL, DELIVERIES, TASK, WORK, PgNotifier
from gengate.store.queries import load
from gengate.store.rows import Row
from gengate.store.sql import NOTHING, Changes, Fetch, Stmt, Tx

T = TypeVar("T")

QUERIES = load("postgres")


async def _no_reset(_conn: Connection) -> None:
    return None


async def execute(conn: Connection | asyncpg.Pool[asyncpg.Record], stmt: Stmt) -> Any:
    """One statement, its result as :class:`Fetch` asks."""
    query = stmt.query
    args = query.args(stmt.params)
    if stmt.fetch is Fetch.ROW:
        return await conn.fetchrow(query.sql, *args)
    if stmt.fetch is Fetch.ROWS:
        return await conn.fetch(query.sql, *args)
    if stmt.fetch is Fetch.VALUE:
        return await conn.fetchval(query.sql, *args)
    return rowcount(await conn.execute(query.sql, *args))


async def run(conn: Connection, tx: Tx[T]) -> T:
    try:
        stmt = next(tx)
        while True:
            stmt = tx.send(await execute(conn, stmt))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


class PostgresDriver:
    queries = QUERIES

    def __init__(
        self, dsn: str, hub: ChangeHub, *, pool_size: int, migrate: bool, connect_timeout_s: float
    ) -> None:
        self.dsn = dsn
        self.hub = hub
        self.pool_size = pool_size
        self.migrate = migrate
        self.connect_timeout_s = connect_timeout_s
        self._prepared = False
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._notifier = PgNotifier(dsn)
        self._listener = PgListener(dsn, self.hub, lambda: self._notifier.server_pid)

    def prepare(self) -> None:
        """Wait up to `connect_timeout_s` for the server (processes of a cluster often start
        beside a database that is still starting) and migrate, once; `build_store` does it before
        a server starts, so that a database out of reach is a StartupError naming its URL."""
        if not self._prepared:
            wait_for_postgres(self.dsn, self.connect_timeout_s, migrate=self.migrate)
            self._prepared = True

    async def open(self) -> None:
        await asyncio.to_thread(self.prepare)
        try:
            await self._connect()
        except (*UNAVAILABLE, psycopg.OperationalError) as exc:
            raise connect_failure(self.dsn, exc) from None

    async def _connect(self) -> None:
        self._pool = await asyncpg.create_pool(
            self.dsn,
            min_size=1,
            max_size=self.pool_size,
            command_timeout=30,
            # Keep idle connections from piling up on the server behind many processes.
            max_inactive_connection_lifetime=60,
            # The store keeps no session state (no LISTEN, cursors or session locks on pooled
            # connections), so the reset query asyncpg sends on every release is a wasted
            # round trip per operation.
            reset=_no_reset,
        )
        await self._notifier.start()
        await self._listener.start()

    async def close(self) -> None:
        await self._listener.stop()
        await self._notifier.stop()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def pool_stats(self) -> tuple[int, int, int] | None:
        """The pool's connections in use, open and at most (`/metrics`); None while closed."""
        pool = self._pool
        if pool is None:
            return None
        size = pool.get_size()
        return size - pool.get_idle_size(), size, pool.get_max_size()

    @property
    def pool(self) -> asyncpg.Pool[asyncpg.Record]:
        assert self._pool is not None, "store not open"
        return self._pool

    @unavailable_on_error
    async def fetch(self, stmt: Stmt) -> Any:
        return await execute(self.pool, stmt)

    @unavailable_on_error
    async def read(self, tx: Tx[T]) -> T:
        async with self.pool.acquire() as conn:
            return await run(conn, tx)

    @unavailable_on_error
    async def write(self, tx: Tx[T], changes: Callable[[T], Changes] | None = None) -> T:
        async with self.pool.acquire() as conn, conn.transaction():
            result = await run(conn, tx)
        if changes is not None:
            self.announce(changes(result))
        return result

    @unavailable_on_error
    async def write_one(self, stmt: Stmt, changes: Callable[[Any], Changes] | None = None) -> Any:
        result = await execute(self.pool, stmt)  # one statement: its own transaction, one round trip
        if changes is not None:
            self.announce(changes(result))
        return result

    @unavailable_on_error
    async def claim(
        self, wanted: Mapping[str, int], owner: str, limit: int, lease_ms: int, caps: Mapping[str, int]
    ) -> list[Row]:
        capped = sorted(model for model in wanted if model in caps)
        if not capped:  # one statement, so one round trip: no transaction to open and close
            now = now_ms()
            params = {"models": list(wanted), "free": list(wanted.values()), "limit": limit}
            claimed = await self.pool.fetch(
                QUERIES["claim"].sql,
                *QUERIES["claim"].args({**params, "owner": owner, "now": now, "expires": now + lease_ms}),
            )
        else:
            claimed = await self._claim_capped(dict(wanted), capped, caps, owner, limit, lease_ms)
        self.announce(Changes(tasks=[found[0] for found in claimed]))
        return list(claimed)

    async def _claim_capped(  # noqa: PLR0917
        self,
        wanted: dict[str, int],
        capped: list[str],
        caps: Mapping[str, int],
        owner: str,
        limit: int,
        lease_ms: int,
    ) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn, conn.transaction():
            # Claims of a capped model wait for each other, so the count below stays true.
            await conn.execute(QUERIES["lock_models"].sql, capped)
            running = {
                found[0]: found[1] for found in await conn.fetch(QUERIES["running_of_models"].sql, capped)
            }
            for model in capped:
                wanted[model] = min(wanted[model], caps[model] - running.get(model, 0))
            wanted = {model: free for model, free in wanted.items() if free > 0}
            if not wanted:
                return []
            now = now_ms()
            params = {"models": list(wanted), "free": list(wanted.values()), "limit": limit, "owner": owner}
            return await conn.fetch(
                QUERIES["claim"].sql,
                *QUERIES["claim"].args({**params, "now": now, "expires": now + lease_ms}),
            )

    @unavailable_on_error
    async def mark_files_removed(self, task_ids: Sequence[str]) -> None:
        await self.pool.execute(QUERIES["mark_files_removed"].sql, list(task_ids))

    def announce(self, changes: Changes) -> None:
        """After a commit: wake this process's waiters now, and the other processes' soon."""
        if changes is NOTHING:
            return
        for task_id in changes.tasks:
            self.hub.task_changed(task_id)
            self._notifier.publish(TASK, task_id)
        if changes.work:
            self.hub.work_added(changes.work)
            for model in changes.work:
                self._notifier.publish(WORK, model)
        for task_id in changes.cancel:
            self.hub.cancel_requested(task_id)
            self._notifier.publish(CANCEL, task_id)
        if changes.deliveries:
            self.hub.deliveries_added()
            self._notifier.publish(DELIVERIES)
