"""The PostgreSQL store's callback outbox: leases on due deliveries and every attempt."""

from __future__ import annotations

from gengate.domain.clock import now_ms
from gengate.domain.deliveries import AttemptResult, Delivery, DeliveryAttempt
from gengate.store import postgres_queries as q
from gengate.store.postgres_edge import PgBase, rowcount, unavailable_on_error
from gengate.store.sqlite_rows import delivery_from_row


class PgDeliveries(PgBase):
    @unavailable_on_error
    async def claim_deliveries(self, owner: str, limit: int, lease_ms: int) -> list[Delivery]:
        now = now_ms()
        rows = await self.pool.fetch(q.CLAIM_DELIVERIES, owner, now + lease_ms, now, limit)
        return [delivery_from_row(tuple(row)) for row in rows]

    @unavailable_on_error
    async def next_delivery_due(self) -> int | None:
        value = await self.pool.fetchval(q.NEXT_DELIVERY_DUE, now_ms())
        return int(value) if value is not None else None

    @unavailable_on_error
    async def record_attempt(self, delivery: Delivery, owner: str, result: AttemptResult) -> bool:
        attempt = result.attempt
        async with self.pool.acquire() as conn, conn.transaction():
            status = await conn.execute(
                q.RECORD_ATTEMPT,
                delivery.id,
                owner,
                attempt.attempt,
                result.state.value,
                result.next_attempt_at,
                now_ms(),
            )
            if rowcount(status) != 1:
                return False
            await conn.execute(
                q.INSERT_ATTEMPT,
                delivery.id,
                attempt.attempt,
                attempt.started_at,
                attempt.status_code,
                attempt.latency_ms,
                attempt.error,
            )
        return True

    @unavailable_on_error
    async def deliveries_of_task(self, task_id: str) -> list[Delivery]:
        async with self.pool.acquire() as conn:
            deliveries = []
            for row in await conn.fetch(q.DELIVERIES_OF_TASK, task_id):
                history = tuple(
                    DeliveryAttempt(*attempt) for attempt in await conn.fetch(q.ATTEMPTS_OF_DELIVERY, row[0])
                )
                deliveries.append(delivery_from_row(tuple(row), history))
        return deliveries

    @unavailable_on_error
    async def redeliver(self, delivery_id: str) -> bool:
        sent = rowcount(await self.pool.execute(q.REDELIVER, delivery_id, now_ms())) == 1
        if sent:
            self._announce(deliveries=True)
        return sent
