"""The SQLite store's part for the web console: sessions and the aggregates its pages draw.

A mixin of :class:`~gengate.store.sqlite.SQLiteStore`: reads on its reader connection, writes
through its writer thread, like every other statement of that store.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict

from gengate.domain.clock import now_ms
from gengate.store.console_base import ConsoleSession, DailyUsage, DeliveryHealth, ModelLoad, WorkerLeases
from gengate.store.edge import unavailable_on
from gengate.store.sqlite_writer import SQLiteWriter

INSERT_SESSION = """
INSERT INTO console_sessions (id_hash, key_id, csrf, created_at, expires_at)
VALUES (:id_hash, :key_id, :csrf, :created_at, :expires_at)
"""
DELETE_EXPIRED_SESSIONS = "DELETE FROM console_sessions WHERE expires_at <= ?"
GET_SESSION = """
SELECT id_hash, key_id, csrf, created_at, expires_at FROM console_sessions
 WHERE id_hash = ? AND expires_at > ?
"""
DELETE_SESSION = "DELETE FROM console_sessions WHERE id_hash = ?"

#: Per UTC day and model; failed tasks were refunded, so they spent nothing.
USAGE_BY_DAY = """
SELECT create_time / 86400000 AS day, model, count(*),
       coalesce(sum(CASE WHEN state = 'failed' THEN 0 ELSE charge END), 0)
  FROM tasks
 WHERE key_id = ? AND create_time >= ?
 GROUP BY day, model
 ORDER BY day, model
"""
PENDING_BY_MODEL = "SELECT model, count(*) FROM tasks WHERE state = 'pending' GROUP BY model"
PROCESSING_BY_MODEL = "SELECT model, count(*) FROM tasks WHERE state = 'processing' GROUP BY model"
#: The retention index covers it: successes whose files are still kept (all of the last hour's,
#: unless results live less than that).
RUN_TIMES_SINCE = """
SELECT model, cost_time FROM tasks
 WHERE state = 'success' AND files_removed = 0 AND complete_time >= ?
"""
WORKER_LEASES = """
SELECT lease_owner, count(*), min(start_time), max(lease_expires) FROM tasks
 WHERE state = 'processing'
 GROUP BY lease_owner
 ORDER BY lease_owner
"""
RETRYING_DELIVERIES = "SELECT count(*) FROM deliveries WHERE state = 'pending' AND attempts > 0"
FAILED_DELIVERIES_SINCE = "SELECT count(*) FROM deliveries WHERE state = 'failed' AND completed_at >= ?"

_unavailable_on_error = unavailable_on(sqlite3.Error)


def loads_from(
    pending: list[tuple[str, int]], processing: list[tuple[str, int]], run_times: list[tuple[str, int]]
) -> list[ModelLoad]:
    """The three row sets of the model queries as one record per model (both backends)."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    times: dict[str, list[int]] = defaultdict(list)
    for model, count in pending:
        counts[model][0] = int(count)
    for model, count in processing:
        counts[model][1] = int(count)
    for model, cost in run_times:
        if cost is not None:
            times[model].append(int(cost))
    models = sorted(set(counts) | set(times))
    return [
        ModelLoad(model, counts[model][0], counts[model][1], tuple(sorted(times[model]))) for model in models
    ]


class SQLiteConsole:
    _writer: SQLiteWriter
    _read: sqlite3.Connection | None

    def _console_reader(self) -> sqlite3.Connection:
        assert self._read is not None, "store not open"
        return self._read

    @_unavailable_on_error
    async def insert_session(self, session: ConsoleSession) -> None:
        row = {f: getattr(session, f) for f in session.__struct_fields__}

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(DELETE_EXPIRED_SESSIONS, (now_ms(),))
            conn.execute(INSERT_SESSION, row)

        await self._writer.submit(insert)

    @_unavailable_on_error
    async def get_session(self, id_hash: str, now: int) -> ConsoleSession | None:
        row = self._console_reader().execute(GET_SESSION, (id_hash, now)).fetchone()
        if row is None:
            return None
        return ConsoleSession(
            id_hash=row[0], key_id=row[1], csrf=row[2], created_at=row[3], expires_at=row[4]
        )

    @_unavailable_on_error
    async def delete_session(self, id_hash: str) -> None:
        def delete(conn: sqlite3.Connection) -> None:
            conn.execute(DELETE_SESSION, (id_hash,))

        await self._writer.submit(delete)

    @_unavailable_on_error
    async def usage_by_day(self, key_id: str, since_ms: int) -> list[DailyUsage]:
        rows = self._console_reader().execute(USAGE_BY_DAY, (key_id, since_ms)).fetchall()
        return [DailyUsage(int(r[0]), r[1], int(r[2]), int(r[3])) for r in rows]

    @_unavailable_on_error
    async def model_loads(self, since_ms: int) -> list[ModelLoad]:
        reader = self._console_reader()
        return loads_from(
            reader.execute(PENDING_BY_MODEL).fetchall(),
            reader.execute(PROCESSING_BY_MODEL).fetchall(),
            reader.execute(RUN_TIMES_SINCE, (since_ms,)).fetchall(),
        )

    @_unavailable_on_error
    async def worker_leases(self) -> list[WorkerLeases]:
        rows = self._console_reader().execute(WORKER_LEASES).fetchall()
        return [WorkerLeases(r[0] or "?", int(r[1]), r[2], r[3]) for r in rows]

    @_unavailable_on_error
    async def delivery_health(self, since_ms: int) -> DeliveryHealth:
        retrying = self._console_reader().execute(RETRYING_DELIVERIES).fetchone()[0]
        failed = self._console_reader().execute(FAILED_DELIVERIES_SINCE, (since_ms,)).fetchone()[0]
        return DeliveryHealth(int(retrying), int(failed))
