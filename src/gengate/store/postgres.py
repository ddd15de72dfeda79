"""The networked store: PostgreSQL through an asyncpg pool, shared by many API and worker processes.

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
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
import psycopg

from gengate.batcher import Batcher
from gengate.domain.clock import now_ms
from gengate.domain.deliveries import new_delivery_id
from gengate.domain.errors import Conflict, InvalidToken, UsedUp
from gengate.domain.states import FailCode
from gengate.domain.task import Claim, Task
from gengate.store import postgres_accounts as accounts
from gengate.store import postgres_queries as q
from gengate.store.base import (
    CANCELED_MESSAGE,
    IDEMPOTENCY_TTL_MS,
    Admission,
    ExpiredResult,
    Failed,
    Idempotency,
    Lease,
    Outcome,
    ReapedTask,
    Succeeded,
    TaskQuery,
)
from gengate.store.notify import ChangeHub
from gengate.store.postgres_console import PgConsole
from gengate.store.postgres_deliveries import PgDeliveries
from gengate.store.postgres_edge import (
    UNAVAILABLE,
    Connection,
    connect_failure,
    rowcount,
    unavailable_on_error,
    wait_for_postgres,
)
from gengate.store.postgres_keys import PgKeys
from gengate.store.postgres_listen import PgListener
from gengate.store.postgres_notify import PgNotifier
from gengate.store.sqlite_rows import (
    file_names,
    files_json,
    task_from_row,
    task_row,
)

log = logging.getLogger(__name__)


async def _no_reset(_conn: Connection) -> None:
    return None


async def _owe_callback(conn: Connection, task: Task, now: int, first_delay_ms: int) -> None:
    """The outbox row, in the transaction that ends the task."""
    if task.callback_url:
        await conn.execute(
            q.INSERT_DELIVERY,
            new_delivery_id(),
            task.id,
            task.key_id,
            task.callback_url,
            task.dialect,
            now,
            first_delay_ms,
        )


class PostgresStore(PgDeliveries, PgKeys, PgConsole):
    """Tasks here; the callback outbox in `PgDeliveries`, keys and the ledger in `PgKeys`, the
    console's sessions and aggregates in `PgConsole`."""

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
        self.dsn = dsn
        self.hub = hub or ChangeHub()
        self.first_callback_delay_ms = first_callback_delay_ms
        self.pool_size = pool_size
        self.migrate = migrate
        self.connect_timeout_s = connect_timeout_s
        self._prepared = False
        self._notifier = PgNotifier(dsn)
        self._submits: Batcher[tuple[Any, ...], tuple[bool, bool, int | None]] = Batcher(self._insert_many)
        self._successes: Batcher[tuple[str, str, int, str], Task | None] = Batcher(self._finish_successes)
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
        await self._successes.close()
        await self._submits.close()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _insert_many(self, rows: Sequence[tuple[Any, ...]]) -> list[tuple[bool, bool, int | None]]:
        """Submits that arrived together: one pipelined, atomic round of INSERT_TASK_CHARGED, so
        one transaction and one WAL flush. Statements run in order in that one transaction, so
        submits of the same key see each other's charges."""
        async with self.pool.acquire() as conn:
            records = await conn.fetchmany(q.INSERT_TASK_CHARGED, rows)
        return [(record[0], record[1], record[2]) for record in records]

    async def _finish_successes(self, batch: Sequence[tuple[str, str, int, str]]) -> list[Task | None]:
        """Successes that arrived together, recorded in one statement (one WAL flush)."""
        ids, owners, attempts, files = (list(column) for column in zip(*batch, strict=True))
        delivery_ids = [new_delivery_id() for _ in batch]
        rows = await self.pool.fetch(
            q.FINISH_SUCCESS_MANY,
            ids,
            owners,
            attempts,
            files,
            delivery_ids,
            now_ms(),
            self.first_callback_delay_ms,
        )
        done = {task.id: task for task in map(task_from_row, rows)}
        return [done.get(task_id) for task_id in ids]

    # -- tasks ---------------------------------------------------------------
    @unavailable_on_error
    async def insert_task(
        self, task: Task, idempotency: Idempotency | None = None, admission: Admission | None = None
    ) -> Task:
        row = task_row(task)
        if idempotency is None and (admission is None or admission == Admission()):
            ok, key_exists, credits = await self._submits.submit(row)
            if not ok:
                if not key_exists:
                    raise InvalidToken
                raise UsedUp(f"This task costs {task.charge} credits and the key has {credits} left.")
            self._announce(work=(task.model,))
            return task
        async with self.pool.acquire() as conn, conn.transaction():
            if idempotency is not None:
                owned = await conn.fetchval(
                    q.CLAIM_IDEMPOTENCY,
                    task.key_id,
                    idempotency.key,
                    idempotency.request_hash,
                    task.id,
                    task.create_time,
                    task.create_time - IDEMPOTENCY_TTL_MS,
                )
                if owned is None:
                    seen = await conn.fetchrow(q.GET_IDEMPOTENCY, task.key_id, idempotency.key)
                    if seen is None or seen[0] != idempotency.request_hash:
                        raise Conflict(
                            "This Idempotency-Key was used with a different request in the last 24 hours."
                        )
                    existing = await conn.fetchrow(q.GET_TASK, seen[1])
                    if existing is not None:
                        return task_from_row(existing)  # a replay: charged once, at its first submit
            # A refusal raises, and the transaction (the idempotency row with it) rolls back.
            await accounts.admit(conn, task, admission)
            await accounts.charge(conn, task, task.create_time)
            await conn.execute(q.INSERT_TASK, *row)
        self._announce(work=(task.model,))
        return task

    @unavailable_on_error
    async def list_tasks(self, key_id: str, query: TaskQuery) -> list[Task]:
        filters: list[str] = []
        params: list[Any] = [key_id, query.limit]
        for column, value, operator in (
            ("state", query.state, "="),
            ("model", query.model, "="),
            ("create_time", query.since, ">="),
            ("create_time", query.until, "<"),
        ):
            if value is not None:
                params.append(value)
                filters.append(f"AND {column} {operator} ${len(params)}")
        if query.before is not None:
            params.extend(query.before)
            filters.append(f"AND (create_time, id) < (${len(params) - 1}, ${len(params)})")
        sql = q.LIST_TASKS.format(filters=" ".join(filters))
        return [task_from_row(row) for row in await self.pool.fetch(sql, *params)]

    @unavailable_on_error
    async def queue_position(self, task: Task) -> int:
        return int(await self.pool.fetchval(q.QUEUE_POSITION, task.model, task.priority, task.create_time))

    @unavailable_on_error
    async def get_task(self, task_id: str) -> Task | None:
        row = await self.pool.fetchrow(q.GET_TASK, task_id)
        return task_from_row(row) if row is not None else None

    @unavailable_on_error
    async def claim(
        self,
        capacity: Mapping[str, int],
        owner: str,
        limit: int,
        lease_ms: int,
        caps: Mapping[str, int] | None = None,
    ) -> list[Claim]:
        # No model's walk locks more rows than the claim can take: rows locked and then not
        # taken would be skipped by concurrent claims for nothing.
        wanted = {model: min(free, limit) for model, free in capacity.items() if free > 0}
        if not wanted or limit <= 0:
            return []
        capped = sorted(model for model in wanted if caps and model in caps)
        if not capped:  # one statement, so one round trip: no transaction to open and close
            now = now_ms()
            rows = await self.pool.fetch(
                q.CLAIM, list(wanted), list(wanted.values()), limit, owner, now, now + lease_ms
            )
        else:
            rows = await self._claim_capped(
                wanted=wanted, capped=capped, caps=caps or {}, owner=owner, limit=limit, lease_ms=lease_ms
            )
        tasks = sorted((task_from_row(row) for row in rows), key=lambda t: (-t.priority, t.create_time))
        self._announce(tasks=[task.id for task in tasks])
        return [Claim(task, task.attempts) for task in tasks]

    async def _claim_capped(
        self,
        *,
        wanted: dict[str, int],
        capped: list[str],
        caps: Mapping[str, int],
        owner: str,
        limit: int,
        lease_ms: int,
    ) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn, conn.transaction():
            # Claims of a capped model wait for each other, so the count below stays true.
            await conn.execute(q.LOCK_MODELS, capped)
            running = {row[0]: row[1] for row in await conn.fetch(q.RUNNING_OF_MODELS, capped)}
            for model in capped:
                wanted[model] = min(wanted[model], caps[model] - running.get(model, 0))
            wanted = {model: free for model, free in wanted.items() if free > 0}
            if not wanted:
                return []
            now = now_ms()
            return await conn.fetch(
                q.CLAIM, list(wanted), list(wanted.values()), limit, owner, now, now + lease_ms
            )

    @unavailable_on_error
    async def heartbeat(self, task_id: str, owner: str, attempt: int, lease_ms: int) -> Lease:
        row = await self.pool.fetchrow(q.HEARTBEAT, task_id, owner, attempt, now_ms() + lease_ms)
        if row is None:
            return Lease.LOST
        return Lease.CANCEL_REQUESTED if row[0] else Lease.HELD

    @unavailable_on_error
    async def cancel(self, task_id: str) -> Task | None:
        """As SQLiteStore.cancel; the worker of a running task may be in another process."""
        async with self.pool.acquire() as conn, conn.transaction():
            now = now_ms()
            row = await conn.fetchrow(q.CANCEL_PENDING, task_id, now, CANCELED_MESSAGE)
            if row is not None:
                task = task_from_row(row)
                await _owe_callback(conn, task, now, self.first_callback_delay_ms)
                await accounts.refund_once(conn, task, now)
                ended = True
            else:
                row = await conn.fetchrow(q.REQUEST_CANCEL, task_id)
                ended = False
                running = row is not None
                if row is None:
                    row = await conn.fetchrow(q.GET_TASK, task_id)
                task = task_from_row(row) if row is not None else None  # type: ignore[assignment]
        if ended:
            self._announce(tasks=(task_id,), deliveries=bool(task.callback_url))
        elif running:
            self._announce(cancel=(task_id,))
        return task

    @unavailable_on_error
    async def set_progress(self, task_id: str, owner: str, attempt: int, progress: int) -> bool:
        status = await self.pool.execute(q.SET_PROGRESS, task_id, owner, attempt, progress)
        changed = rowcount(status) == 1
        if changed:
            self._announce(tasks=(task_id,))
        return changed

    @unavailable_on_error
    async def set_upstream(self, task_id: str, owner: str, attempt: int, upstream: str) -> bool:
        status = await self.pool.execute(q.SET_UPSTREAM, task_id, owner, attempt, upstream)
        return rowcount(status) == 1

    @unavailable_on_error
    async def finish(self, task_id: str, owner: str, attempt: int, outcome: Outcome) -> Task | None:
        if isinstance(outcome, Succeeded):
            done = await self._successes.submit((task_id, owner, attempt, files_json(outcome.files)))
            if done is not None:
                self._announce(tasks=(task_id,), deliveries=bool(done.callback_url))
            return done
        async with self.pool.acquire() as conn, conn.transaction():
            now = now_ms()
            row = await conn.fetchrow(
                q.FINISH, task_id, owner, attempt, "failed", now, None, outcome.fail_code, outcome.fail_msg
            )
            if row is None:
                return None
            task = task_from_row(row)
            await _owe_callback(conn, task, now, self.first_callback_delay_ms)
            await accounts.refund_once(conn, task, now)  # a failure only
        self._announce(tasks=(task_id,), deliveries=bool(task.callback_url))
        return task

    @unavailable_on_error
    async def retry_later(self, task_id: str, owner: str, attempt: int, run_after_ms: int) -> bool:
        status = await self.pool.execute(q.RETRY_LATER, task_id, owner, attempt, run_after_ms)
        changed = rowcount(status) == 1
        if changed:  # workers find it by their slow poll once its backoff is over
            self._announce(tasks=(task_id,))
        return changed

    @unavailable_on_error
    async def release(self, task_id: str, owner: str, attempt: int) -> bool:
        released = rowcount(await self.pool.execute(q.RELEASE, task_id, owner, attempt)) == 1
        if released:
            task = await self.pool.fetchrow(q.GET_TASK, task_id)
            self._announce(tasks=(task_id,), work=(task_from_row(task).model,) if task is not None else ())
        return released

    @unavailable_on_error
    async def reap_expired(self, now_ms: int, max_attempts: Mapping[str, int]) -> list[ReapedTask]:
        reaped: list[ReapedTask] = []
        async with self.pool.acquire() as conn, conn.transaction():
            for task_id, model, attempts, cancel_requested in await conn.fetch(q.EXPIRED_LEASES, now_ms):
                if attempts < max_attempts.get(model, 1) and not cancel_requested:
                    changed = rowcount(await conn.execute(q.REQUEUE, task_id, now_ms)) == 1
                    reaped.append(ReapedTask(task_id, True)) if changed else None
                    continue
                lost = (
                    Failed(FailCode.CANCELED, CANCELED_MESSAGE)
                    if cancel_requested
                    else Failed(
                        FailCode.WORKER_LOST, f"The worker running the task was lost {attempts} times."
                    )
                )
                row = await conn.fetchrow(q.FAIL_LOST, task_id, now_ms, lost.fail_code, lost.fail_msg)
                if row is not None:
                    lost_task = task_from_row(row)
                    await _owe_callback(conn, lost_task, now_ms, self.first_callback_delay_ms)
                    await accounts.refund_once(conn, lost_task, now_ms)
                    reaped.append(ReapedTask(task_id, False))
        self._announce(
            tasks=[r.task_id for r in reaped],
            work=("*",) if any(r.requeued for r in reaped) else (),
            deliveries=any(not r.requeued for r in reaped),
        )
        return reaped

    @unavailable_on_error
    async def expired_results(self, complete_before_ms: int, limit: int) -> list[ExpiredResult]:
        rows = await self.pool.fetch(q.EXPIRED_RESULTS, complete_before_ms, limit)
        return [ExpiredResult(row[0], file_names(row[1])) for row in rows]

    @unavailable_on_error
    async def mark_files_removed(self, task_ids: Sequence[str]) -> None:
        await self.pool.execute(q.MARK_FILES_REMOVED, list(task_ids))

    @unavailable_on_error
    async def queue_depth(self, model: str) -> int:
        return int(await self.pool.fetchval(q.QUEUE_DEPTH, model))
