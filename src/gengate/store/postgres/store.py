"""The networked store: the store's logic over the PostgreSQL driver, and PostgreSQL's two
batched hot paths. Submits and successes that arrive together go as one statement each (one
transaction, one WAL flush) instead of one round of transactions each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gengate.batcher import Batcher
from gengate.domain import admission as refusals
from gengate.domain.clock import now_ms
from gengate.domain.deliveries import AttemptResult, Delivery, new_delivery_id
from gengate.domain.endings import Outcome, Succeeded
from gengate.domain.errors import InvalidToken
from gengate.domain.task import Task
from gengate.store.base import Admission, Idempotency
from gengate.store.notify import ChangeHub
from gengate.store.postgres.driver import QUERIES, PostgresDriver
from gengate.store.postgres.edge import unavailable_on_error
from gengate.store.rows import files_json, task_from_row, task_params
from gengate.store.sql import Changes
from gengate.store.sql_store import SqlStore, attempts_json

_CHARGED = QUERIES["insert_task_charged"]
_SUCCESSES = QUERIES["finish_success_many"]
_ATTEMPTS = QUERIES["record_attempts"]
#: One success of a batch: task id, owner, attempt, files JSON, output JSON.
_Success = tuple[str, str, int, str, str | None]


class PostgresStore(SqlStore):
    driver: PostgresDriver

    def __init__(
        self,
        dsn: str,
        hub: ChangeHub | None = None,
        *,
        first_callback_delay_ms: int = 0,
        pool_size: int = 10,
        migrate: bool = True,
        connect_timeout_s: float = 30.0,
    ) -> None:
        hub = hub or ChangeHub()
        driver = PostgresDriver(
            dsn, hub, pool_size=pool_size, migrate=migrate, connect_timeout_s=connect_timeout_s
        )
        super().__init__(driver, hub, first_callback_delay_ms)
        self.dsn = dsn
        self._submits: Batcher[tuple[Any, ...], tuple[bool, bool, int | None]] = Batcher(self._insert_many)
        self._successes: Batcher[_Success, Task | None] = Batcher(self._finish_successes)

    def prepare(self) -> None:
        """Wait for the server and migrate, once, before a server starts (see `build_store`)."""
        self.driver.prepare()

    async def close(self) -> None:
        await self._successes.close()
        await self._submits.close()
        await super().close()

    async def _insert_many(self, rows: Sequence[tuple[Any, ...]]) -> list[tuple[bool, bool, int | None]]:
        """Submits that arrived together: one pipelined, atomic round of insert_task_charged, so
        one transaction and one WAL flush. Statements run in order in that one transaction, so
        submits of the same key see each other's charges."""
        async with self.driver.pool.acquire() as conn:
            records = await conn.fetchmany(_CHARGED.sql, rows)
        return [(record[0], record[1], record[2]) for record in records]

    async def _finish_successes(self, batch: Sequence[_Success]) -> list[Task | None]:
        """Successes that arrived together, recorded in one statement (one WAL flush)."""
        ids, owners, attempts, files, outputs = (list(column) for column in zip(*batch, strict=True))
        params = {
            "ids": ids,
            "owners": owners,
            "attempts": attempts,
            "files": files,
            "outputs": outputs,
            "delivery_ids": [new_delivery_id() for _ in batch],
            "now": now_ms(),
            "first_delay": self.first_callback_delay_ms,
        }
        done = {
            task.id: task
            for task in map(
                task_from_row, await self.driver.pool.fetch(_SUCCESSES.sql, *_SUCCESSES.args(params))
            )
        }
        return [done.get(task_id) for task_id in ids]

    @unavailable_on_error
    async def insert_task(
        self, task: Task, idempotency: Idempotency | None = None, admission: Admission | None = None
    ) -> Task:
        if idempotency is not None or (admission is not None and admission != Admission()):
            return await super().insert_task(task, idempotency, admission)
        ok, key_exists, credits = await self._submits.submit(tuple(_CHARGED.args(task_params(task))))
        if not ok:
            if not key_exists:
                raise InvalidToken
            raise refusals.used_up(task.charge, credits)
        self.driver.announce(Changes(work=(task.model,)))
        return task

    @unavailable_on_error
    async def finish(
        self,
        task_id: str,
        owner: str,
        attempt: int,
        outcome: Outcome,
        *,
        callback: bool = True,
        claimed: Task | None = None,
    ) -> Task | None:
        # Successes go in batches of one statement each, which return whole rows: `claimed` is
        # not needed there.
        if not isinstance(outcome, Succeeded):
            return await super().finish(task_id, owner, attempt, outcome, callback=callback, claimed=claimed)
        done = await self._successes.submit(
            (task_id, owner, attempt, files_json(outcome.files), outcome.output_json)
        )
        if done is not None:
            self.driver.announce(Changes(tasks=(task_id,), deliveries=bool(done.callback_url)))
        return done

    @unavailable_on_error
    async def record_attempts(
        self, owner: str, attempts: Sequence[tuple[Delivery, AttemptResult]]
    ) -> list[bool]:
        """A batch of callback attempts in one statement: one round trip, one WAL flush."""
        if not attempts:
            return []
        params = {"attempts": attempts_json(attempts), "owner": owner, "now": now_ms()}
        found = await self.driver.pool.fetch(_ATTEMPTS.sql, *_ATTEMPTS.args(params))
        recorded = {record[0] for record in found}
        return [delivery.id in recorded for delivery, _result in attempts]
