"""The PostgreSQL store's part for the web console: sessions and the aggregates its pages draw
(the same statements as :mod:`gengate.store.sqlite_console`, in PostgreSQL's placeholders)."""

from __future__ import annotations

from gengate.domain.clock import now_ms
from gengate.store.console_base import ConsoleSession, DailyUsage, DeliveryHealth, ModelLoad, WorkerLeases
from gengate.store.postgres_edge import PgBase, unavailable_on_error
from gengate.store.sqlite_console import loads_from

INSERT_SESSION = """
INSERT INTO console_sessions (id_hash, key_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)
"""
DELETE_EXPIRED_SESSIONS = "DELETE FROM console_sessions WHERE expires_at <= $1"
GET_SESSION = """
SELECT id_hash, key_id, csrf, created_at, expires_at FROM console_sessions
 WHERE id_hash = $1 AND expires_at > $2
"""
DELETE_SESSION = "DELETE FROM console_sessions WHERE id_hash = $1"
USAGE_BY_DAY = """
SELECT create_time / 86400000 AS day, model, count(*),
       coalesce(sum(CASE WHEN state = 'failed' THEN 0 ELSE charge END), 0)
  FROM tasks
 WHERE key_id = $1 AND create_time >= $2
 GROUP BY day, model
 ORDER BY day, model
"""
PENDING_BY_MODEL = "SELECT model, count(*) FROM tasks WHERE state = 'pending' GROUP BY model"
PROCESSING_BY_MODEL = "SELECT model, count(*) FROM tasks WHERE state = 'processing' GROUP BY model"
RUN_TIMES_SINCE = """
SELECT model, cost_time FROM tasks
 WHERE state = 'success' AND files_removed = 0 AND complete_time >= $1
"""
WORKER_LEASES = """
SELECT lease_owner, count(*), min(start_time), max(lease_expires) FROM tasks
 WHERE state = 'processing'
 GROUP BY lease_owner
 ORDER BY lease_owner
"""
RETRYING_DELIVERIES = "SELECT count(*) FROM deliveries WHERE state = 'pending' AND attempts > 0"
FAILED_DELIVERIES_SINCE = "SELECT count(*) FROM deliveries WHERE state = 'failed' AND completed_at >= $1"


class PgConsole(PgBase):
    @unavailable_on_error
    async def insert_session(self, session: ConsoleSession) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(DELETE_EXPIRED_SESSIONS, now_ms())
            await conn.execute(
                INSERT_SESSION,
                session.id_hash,
                session.key_id,
                session.csrf,
                session.created_at,
                session.expires_at,
            )

    @unavailable_on_error
    async def get_session(self, id_hash: str, now: int) -> ConsoleSession | None:
        row = await self.pool.fetchrow(GET_SESSION, id_hash, now)
        if row is None:
            return None
        return ConsoleSession(
            id_hash=row[0], key_id=row[1], csrf=row[2], created_at=row[3], expires_at=row[4]
        )

    @unavailable_on_error
    async def delete_session(self, id_hash: str) -> None:
        await self.pool.execute(DELETE_SESSION, id_hash)

    @unavailable_on_error
    async def usage_by_day(self, key_id: str, since_ms: int) -> list[DailyUsage]:
        rows = await self.pool.fetch(USAGE_BY_DAY, key_id, since_ms)
        return [DailyUsage(int(r[0]), r[1], int(r[2]), int(r[3])) for r in rows]

    @unavailable_on_error
    async def model_loads(self, since_ms: int) -> list[ModelLoad]:
        pending = await self.pool.fetch(PENDING_BY_MODEL)
        processing = await self.pool.fetch(PROCESSING_BY_MODEL)
        run_times = await self.pool.fetch(RUN_TIMES_SINCE, since_ms)
        return loads_from(
            [(r[0], r[1]) for r in pending],
            [(r[0], r[1]) for r in processing],
            [(r[0], r[1]) for r in run_times],
        )

    @unavailable_on_error
    async def worker_leases(self) -> list[WorkerLeases]:
        rows = await self.pool.fetch(WORKER_LEASES)
        return [WorkerLeases(r[0] or "?", int(r[1]), r[2], r[3]) for r in rows]

    @unavailable_on_error
    async def delivery_health(self, since_ms: int) -> DeliveryHealth:
        retrying = await self.pool.fetchval(RETRYING_DELIVERIES)
        failed = await self.pool.fetchval(FAILED_DELIVERIES_SINCE, since_ms)
        return DeliveryHealth(int(retrying), int(failed))
