"""The SQLite driver: reads on the event loop, writes group-committed by one writer thread.

A point read on the loop costs a few microseconds, less than handing it to a thread would;
WAL lets it run beside the writer thread and see every committed change. A transaction of
the store's logic runs whole inside the writer thread (see :mod:`gengate.store.sql`), so it
joins whatever else commits with it.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from gengate.domain.clock import now_ms
from gengate.store.edge import unavailable_on
from gengate.store.notify import ChangeHub
from gengate.store.queries import Query, load
from gengate.store.rows import Row
from gengate.store.sql import NOTHING, Changes, Fetch, Stmt, Tx
from gengate.store.sqlite.opening import opening, prepare_sqlite
from gengate.store.sqlite.writer import SQLiteWriter
from gengate.store.write_health import WriteHealth

T = TypeVar("T")

QUERIES = load("sqlite")

_unavailable_on_error = unavailable_on(sqlite3.Error)

PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    # FULL: a commit is on disk before it returns, so an accepted task survives power loss.
    "PRAGMA synchronous = FULL",
    "PRAGMA busy_timeout = 5000",
    # Point reads of a large table touch a few pages each: keep them in memory (64 MiB of cache,
    # and the file mapped), so a status read costs about the same at a million tasks as at a
    # thousand.
    "PRAGMA cache_size = -65536",
    "PRAGMA mmap_size = 268435456",
)


def execute(conn: sqlite3.Connection, stmt: Stmt) -> Any:
    """One statement on `conn`, its result as :class:`Fetch` asks."""
    cursor = conn.execute(stmt.query.sql, stmt.query.args(stmt.params))
    if stmt.fetch is Fetch.ROW:
        return cursor.fetchone()
    if stmt.fetch is Fetch.ROWS:
        return cursor.fetchall()
    if stmt.fetch is Fetch.VALUE:
        first = cursor.fetchone()
        return first[0] if first is not None else None
    cursor.fetchall()  # a RETURNING statement counts its rows only once they are read
    return cursor.rowcount


def run(conn: sqlite3.Connection, tx: Tx[T]) -> T:
    """A whole transaction of the store's logic, on the writer's (or the reader's) connection."""
    try:
        stmt = next(tx)
        while True:
            stmt = tx.send(execute(conn, stmt))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


@functools.cache
def claim_of(models: int) -> Query:
    """The claim of tasks of `models` models: one claim_head per model (their `:m<i>`, `:c<i>`)."""
    heads = " UNION ALL ".join(QUERIES["claim_head"].source.format(i=i) for i in range(models))
    return QUERIES["claim"].filled(heads=heads)


class SQLiteDriver:
    queries = QUERIES

    def __init__(self, path: Path, hub: ChangeHub) -> None:
        self.path = path
        self.hub = hub
        self.writer = SQLiteWriter(path, PRAGMAS, self._foreign_commit)
        self._read: sqlite3.Connection | None = None
        self._prepared = False

    def prepare(self) -> None:
        """Make or upgrade the file, once: `build_store` does it before a server starts, so a
        database that cannot be used is a StartupError naming it, not a failed lifespan."""
        if not self._prepared:
            prepare_sqlite(self.path)
            self._prepared = True

    async def open(self) -> None:
        self.prepare()
        with opening(self.path):
            self.writer.start()
            self._read = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            for pragma in PRAGMAS:
                self._read.execute(pragma)
            self._read.execute("PRAGMA query_only = ON")

    def _foreign_commit(self) -> None:
        """Another process changed the database: whoever waits here looks again."""
        self.hub.wake_all_tasks()
        self.hub.work_added()
        self.hub.deliveries_added()

    async def close(self) -> None:
        await self.writer.stop()
        if self._read is not None:
            self._read.close()
            self._read = None

    @property
    def write_health(self) -> WriteHealth:
        return self.writer.health

    def _reader(self) -> sqlite3.Connection:
        assert self._read is not None, "store not open"
        return self._read

    @_unavailable_on_error
    async def fetch(self, stmt: Stmt) -> Any:
        return execute(self._reader(), stmt)

    @_unavailable_on_error
    async def read(self, tx: Tx[T]) -> T:
        return run(self._reader(), tx)

    @_unavailable_on_error
    async def write(self, tx: Tx[T], changes: Callable[[T], Changes] | None = None) -> T:
        after = (lambda result: self.announce(changes(result))) if changes is not None else None
        return await self.writer.submit(lambda conn: run(conn, tx), after)

    @_unavailable_on_error
    async def write_one(self, stmt: Stmt, changes: Callable[[Any], Changes] | None = None) -> Any:
        after = (lambda result: self.announce(changes(result))) if changes is not None else None
        return await self.writer.submit(lambda conn: execute(conn, stmt), after)

    @_unavailable_on_error
    async def claim(
        self, wanted: Mapping[str, int], owner: str, limit: int, lease_ms: int, caps: Mapping[str, int]
    ) -> list[Row]:
        def claim(conn: sqlite3.Connection) -> list[Row]:
            # The one writer serialises claims, so counting the running tasks here holds the caps.
            running = dict(conn.execute(QUERIES["running_by_model"].sql).fetchall()) if caps else {}
            free = [
                (model, min(n, caps[model] - running.get(model, 0)) if model in caps else n)
                for model, n in wanted.items()
            ]
            free = [(model, n) for model, n in free if n > 0]
            if not free:
                return []
            now = now_ms()
            params: dict[str, Any] = {"owner": owner, "expires": now + lease_ms, "now": now, "limit": limit}
            for i, (model, n) in enumerate(free):
                params[f"m{i}"] = model
                params[f"c{i}"] = n
            query = claim_of(len(free))
            return conn.execute(query.sql, query.args(params)).fetchall()

        def after(claimed: list[Row]) -> None:
            self.announce(Changes(tasks=[found[0] for found in claimed]))

        return await self.writer.submit(claim, after)

    @_unavailable_on_error
    async def mark_files_removed(self, task_ids: Sequence[str]) -> None:
        def mark(conn: sqlite3.Connection) -> None:
            mark = QUERIES["mark_files_removed"]
            conn.executemany(mark.sql, [mark.args({"id": task_id}) for task_id in task_ids])

        await self.writer.submit(mark)

    def announce(self, changes: Changes) -> None:
        """After a commit: wake this process's waiters (other processes see `data_version`)."""
        if changes is NOTHING:
            return
        for task_id in changes.tasks:
            self.hub.task_changed(task_id)
        if changes.work:
            self.hub.work_added(changes.work)
        for task_id in changes.cancel:
            self.hub.cancel_requested(task_id)
        if changes.deliveries:
            self.hub.deliveries_added()
