"""The embedded store: SQLite in WAL mode, reads on the event loop, writes group-committed.

A point read on the loop costs a few microseconds, less than handing it to a thread would;
WAL lets it run beside the writer thread and see every committed change.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import msgspec

from gengate.domain.clock import now_ms
from gengate.domain.deliveries import (
    AttemptResult,
    Delivery,
    DeliveryAttempt,
)
from gengate.domain.errors import Conflict
from gengate.domain.keys import ApiKey, KeyChanges
from gengate.domain.ledger import LedgerEntry
from gengate.domain.states import FailCode, TaskState
from gengate.domain.task import Claim, Task
from gengate.store import sqlite_queries as q
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
from gengate.store.edge import unavailable_on
from gengate.store.notify import ChangeHub
from gengate.store.sqlite_accounts import add_credits, admit, charge, record_new_balance, refund_once
from gengate.store.sqlite_console import SQLiteConsole
from gengate.store.sqlite_open import opening, prepare_sqlite
from gengate.store.sqlite_rows import (
    delivery_from_row,
    file_names,
    files_json,
    key_from_row,
    key_row,
    ledger_from_row,
    models_json,
    owe_callback,
    task_from_row,
    task_row,
)
from gengate.store.sqlite_writer import SQLiteWriter
from gengate.store.write_health import WriteHealth

P = ParamSpec("P")
R = TypeVar("R")


_unavailable_on_error = unavailable_on(sqlite3.Error)


class SQLiteStore(SQLiteConsole):
    def __init__(self, path: Path, hub: ChangeHub | None = None, *, first_callback_delay_ms: int = 0) -> None:
        self.path = path
        self.hub = hub or ChangeHub()
        #: The first delay of the callback retry schedule: when a newly owed callback is due.
        self.first_callback_delay_ms = first_callback_delay_ms
        self._writer = SQLiteWriter(path, q.PRAGMAS, self._foreign_commit)
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
            self._writer.start()
            self._read = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            for pragma in q.PRAGMAS:
                self._read.execute(pragma)
            self._read.execute("PRAGMA query_only = ON")

    def _foreign_commit(self) -> None:
        """Another process changed the database: whoever waits here looks again."""
        self.hub.wake_all_tasks()
        self.hub.work_added()
        self.hub.deliveries_added()

    async def close(self) -> None:
        await self._writer.stop()
        if self._read is not None:
            self._read.close()
            self._read = None

    @property
    def _reader(self) -> sqlite3.Connection:
        assert self._read is not None, "store not open"
        return self._read

    @property
    def write_health(self) -> WriteHealth:
        """Whether writes reach the disk, for `/readyz`."""
        return self._writer.health

    # -- tasks ---------------------------------------------------------------
    @_unavailable_on_error
    async def insert_task(
        self, task: Task, idempotency: Idempotency | None = None, admission: Admission | None = None
    ) -> Task:
        row = task_row(task)
        params = {
            "key_id": task.key_id,
            "idem_key": idempotency.key if idempotency is not None else None,
            "since": task.create_time - IDEMPOTENCY_TTL_MS,
        }

        def insert(conn: sqlite3.Connection) -> Task | None:
            if idempotency is not None:
                seen = conn.execute(q.GET_IDEMPOTENCY, params).fetchone()
                if seen is not None:
                    if seen[0] != idempotency.request_hash:
                        return None
                    existing = conn.execute(q.GET_TASK, (seen[1],)).fetchone()
                    if existing is not None:
                        return task_from_row(existing)  # a replay: charged once, at its first submit
            # The caps and the charge raise to refuse the task; the writer then rolls this
            # operation back, so the idempotency row and the task below are never written.
            admit(conn, task, admission)
            charge(conn, task, task.create_time)
            if idempotency is not None:
                conn.execute(
                    q.PUT_IDEMPOTENCY,
                    {
                        **params,
                        "request_hash": idempotency.request_hash,
                        "task_id": task.id,
                        "now": task.create_time,
                    },
                )
            conn.execute(q.INSERT_TASK, row)
            return task

        stored = await self._writer.submit(insert, lambda _: self.hub.work_added((task.model,)))
        if stored is None:
            raise Conflict("This Idempotency-Key was used with a different request in the last 24 hours.")
        return stored

    @_unavailable_on_error
    async def list_tasks(self, key_id: str, query: TaskQuery) -> list[Task]:
        filters: list[str] = []
        params: dict[str, Any] = {"key_id": key_id, "limit": query.limit}
        for column, value, operator in (
            ("state", query.state, "="),
            ("model", query.model, "="),
            ("create_time", query.since, ">="),
            ("create_time", query.until, "<"),
        ):
            if value is not None:
                filters.append(f"AND {column} {operator} :{column}_{len(filters)}")
                params[f"{column}_{len(filters) - 1}"] = value
        if query.before is not None:
            filters.append("AND (create_time, id) < (:before_time, :before_id)")
            params["before_time"], params["before_id"] = query.before
        sql = q.LIST_TASKS.format(filters=" ".join(filters))
        return [task_from_row(row) for row in self._reader.execute(sql, params).fetchall()]

    @_unavailable_on_error
    async def queue_position(self, task: Task) -> int:
        """Pending tasks of the same model ahead of this one."""
        params = {"model": task.model, "priority": task.priority, "create_time": task.create_time}
        row = self._reader.execute(q.QUEUE_POSITION, params).fetchone()
        return int(row[0])

    @_unavailable_on_error
    async def get_task(self, task_id: str) -> Task | None:
        row = self._reader.execute(q.GET_TASK, (task_id,)).fetchone()
        return task_from_row(row) if row is not None else None

    @_unavailable_on_error
    async def claim(
        self,
        capacity: Mapping[str, int],
        owner: str,
        limit: int,
        lease_ms: int,
        caps: Mapping[str, int] | None = None,
    ) -> list[Claim]:
        if limit <= 0 or not any(free > 0 for free in capacity.values()):
            return []

        def claim(conn: sqlite3.Connection) -> list[Claim]:
            # The one writer serialises claims, so counting the running tasks here holds the caps.
            running = dict(conn.execute(q.RUNNING_BY_MODEL).fetchall()) if caps else {}
            wanted = [
                (model, min(free, caps[model] - running.get(model, 0)) if caps and model in caps else free)
                for model, free in capacity.items()
            ]
            wanted = [(model, free) for model, free in wanted if free > 0]
            if not wanted:
                return []
            heads = " UNION ALL ".join(q.CLAIM_HEAD.format(i=i) for i in range(len(wanted)))
            sql = q.CLAIM.format(heads=heads)
            now = now_ms()
            params: dict[str, Any] = {"owner": owner, "expires": now + lease_ms, "now": now, "limit": limit}
            for i, (model, free) in enumerate(wanted):
                params[f"m{i}"] = model
                params[f"c{i}"] = free
            tasks = [task_from_row(row) for row in conn.execute(sql, params).fetchall()]
            tasks.sort(key=lambda t: (-t.priority, t.create_time))
            return [Claim(task, task.attempts) for task in tasks]

        return await self._writer.submit(claim, self._changed_claims)

    def _changed_claims(self, claims: list[Claim]) -> None:
        for claim in claims:
            self.hub.task_changed(claim.task.id)

    @_unavailable_on_error
    async def heartbeat(self, task_id: str, owner: str, attempt: int, lease_ms: int) -> Lease:
        def beat(conn: sqlite3.Connection) -> Lease:
            params = {"id": task_id, "owner": owner, "attempt": attempt, "expires": now_ms() + lease_ms}
            row = conn.execute(q.HEARTBEAT, params).fetchone()
            if row is None:
                return Lease.LOST
            return Lease.CANCEL_REQUESTED if row[0] else Lease.HELD

        return await self._writer.submit(beat)

    @_unavailable_on_error
    async def cancel(self, task_id: str) -> Task | None:
        """Cancel: a pending task ends `failed`/`CANCELED` at once (callback owed in the same
        transaction); a running one is marked for its worker to stop. Returns the task as it
        then stands, unchanged when it had already finished."""

        def cancel(conn: sqlite3.Connection) -> tuple[Task | None, bool]:
            now = now_ms()
            params = {"id": task_id, "now": now, "fail_msg": CANCELED_MESSAGE}
            row = conn.execute(q.CANCEL_PENDING, params).fetchone()
            if row is not None:
                task = task_from_row(row)
                owe_callback(conn, task, now, self.first_callback_delay_ms)
                refund_once(conn, task, now)
                return task, False
            row = conn.execute(q.REQUEST_CANCEL, {"id": task_id}).fetchone()
            if row is not None:
                return task_from_row(row), True
            row = conn.execute(q.GET_TASK, (task_id,)).fetchone()
            return (task_from_row(row) if row is not None else None), False

        def after(result: tuple[Task | None, bool]) -> None:
            task, running = result
            if task is None:
                return
            if running:
                self.hub.cancel_requested(task.id)
            elif task.fail_code == "CANCELED":
                self.hub.task_changed(task.id)
                if task.callback_url:
                    self.hub.deliveries_added()

        task, _running = await self._writer.submit(cancel, after)
        return task

    @_unavailable_on_error
    async def set_progress(self, task_id: str, owner: str, attempt: int, progress: int) -> bool:
        def update(conn: sqlite3.Connection) -> bool:
            params = {"id": task_id, "owner": owner, "attempt": attempt, "progress": progress}
            return conn.execute(q.SET_PROGRESS, params).rowcount == 1

        return await self._writer.submit(update, lambda changed: self._notify_if(changed, task_id))

    @_unavailable_on_error
    async def finish(self, task_id: str, owner: str, attempt: int, outcome: Outcome) -> Task | None:
        params: dict[str, Any] = {"id": task_id, "owner": owner, "attempt": attempt}
        if isinstance(outcome, Succeeded):
            params |= {
                "state": TaskState.SUCCESS.value,
                "files": files_json(outcome.files),
                "fail_code": None,
                "fail_msg": None,
            }
        else:
            params |= {
                "state": TaskState.FAILED.value,
                "files": None,
                "fail_code": outcome.fail_code,
                "fail_msg": outcome.fail_msg,
            }

        def finish(conn: sqlite3.Connection) -> Task | None:
            now = now_ms()
            row = conn.execute(q.FINISH, {**params, "now": now}).fetchone()
            if row is None:
                return None
            task = task_from_row(row)
            owe_callback(conn, task, now, self.first_callback_delay_ms)
            refund_once(conn, task, now)  # a failure only
            return task

        def after(task: Task | None) -> None:
            if task is not None:
                self.hub.task_changed(task_id)
                if task.callback_url:
                    self.hub.deliveries_added()

        return await self._writer.submit(finish, after)

    def _notify_if(self, changed: bool, task_id: str) -> None:
        if changed:
            self.hub.task_changed(task_id)

    @_unavailable_on_error
    async def retry_later(self, task_id: str, owner: str, attempt: int, run_after_ms: int) -> bool:
        def retry(conn: sqlite3.Connection) -> bool:
            params = {"id": task_id, "owner": owner, "attempt": attempt, "run_after": run_after_ms}
            return conn.execute(q.RETRY_LATER, params).rowcount == 1

        return await self._writer.submit(retry, lambda changed: self._notify_if(changed, task_id))

    @_unavailable_on_error
    async def set_upstream(self, task_id: str, owner: str, attempt: int, upstream: str) -> bool:
        def update(conn: sqlite3.Connection) -> bool:
            params = {"id": task_id, "owner": owner, "attempt": attempt, "upstream": upstream}
            return conn.execute(q.SET_UPSTREAM, params).rowcount == 1

        return await self._writer.submit(update)

    @_unavailable_on_error
    async def release(self, task_id: str, owner: str, attempt: int) -> bool:
        def release(conn: sqlite3.Connection) -> bool:
            params = {"id": task_id, "owner": owner, "attempt": attempt}
            return conn.execute(q.RELEASE, params).rowcount == 1

        def after(released: bool) -> None:
            if released:
                self.hub.task_changed(task_id)
                self.hub.work_added()

        return await self._writer.submit(release, after)

    @_unavailable_on_error
    async def reap_expired(self, now_ms: int, max_attempts: Mapping[str, int]) -> list[ReapedTask]:
        def reap(conn: sqlite3.Connection) -> list[ReapedTask]:
            reaped = []
            expired = conn.execute(q.EXPIRED_LEASES, {"now": now_ms}).fetchall()
            for task_id, model, attempts, cancel_requested in expired:
                if attempts < max_attempts.get(model, 1) and not cancel_requested:
                    changed = conn.execute(q.REQUEUE, {"id": task_id, "now": now_ms}).rowcount
                    requeued = True
                else:
                    # A canceled task whose worker died is not run again: it ends canceled.
                    lost = (
                        Failed(FailCode.CANCELED, CANCELED_MESSAGE)
                        if cancel_requested
                        else Failed(
                            FailCode.WORKER_LOST, f"The worker running the task was lost {attempts} times."
                        )
                    )
                    params = {
                        "id": task_id,
                        "now": now_ms,
                        "fail_code": lost.fail_code,
                        "fail_msg": lost.fail_msg,
                    }
                    row = conn.execute(q.FAIL_LOST, params).fetchone()
                    changed = row is not None
                    if row is not None:
                        lost_task = task_from_row(row)
                        owe_callback(conn, lost_task, now_ms, self.first_callback_delay_ms)
                        refund_once(conn, lost_task, now_ms)
                    requeued = False
                if changed:
                    reaped.append(ReapedTask(task_id, requeued))
            return reaped

        def after(reaped: list[ReapedTask]) -> None:
            for task in reaped:
                self.hub.task_changed(task.task_id)
            if any(task.requeued for task in reaped):
                self.hub.work_added()
            if any(not task.requeued for task in reaped):
                self.hub.deliveries_added()

        return await self._writer.submit(reap, after)

    @_unavailable_on_error
    async def expired_results(self, complete_before_ms: int, limit: int) -> list[ExpiredResult]:
        rows = self._reader.execute(q.EXPIRED_RESULTS, {"before": complete_before_ms, "limit": limit})
        return [ExpiredResult(row[0], file_names(row[1])) for row in rows.fetchall()]

    @_unavailable_on_error
    async def mark_files_removed(self, task_ids: Sequence[str]) -> None:
        def mark(conn: sqlite3.Connection) -> None:
            conn.executemany(q.MARK_FILES_REMOVED, [(task_id,) for task_id in task_ids])

        await self._writer.submit(mark)

    @_unavailable_on_error
    async def queue_depth(self, model: str) -> int:
        row = self._reader.execute(q.QUEUE_DEPTH, (model,)).fetchone()
        return int(row[0])

    # -- callbacks ---------------------------------------------------------------
    @_unavailable_on_error
    async def claim_deliveries(self, owner: str, limit: int, lease_ms: int) -> list[Delivery]:
        """Due deliveries, leased to `owner` so that one sender at a time works on each."""

        def claim(conn: sqlite3.Connection) -> list[Delivery]:
            now = now_ms()
            params = {"owner": owner, "expires": now + lease_ms, "now": now, "limit": limit}
            return [delivery_from_row(row) for row in conn.execute(q.CLAIM_DELIVERIES, params).fetchall()]

        return await self._writer.submit(claim)

    @_unavailable_on_error
    async def next_delivery_due(self) -> int | None:
        row = self._reader.execute(q.NEXT_DELIVERY_DUE, {"now": now_ms()}).fetchone()
        return int(row[0]) if row[0] is not None else None

    @_unavailable_on_error
    async def record_attempt(self, delivery: Delivery, owner: str, result: AttemptResult) -> bool:
        """Record one attempt and what follows; False when the lease on it was lost meanwhile."""
        attempt = result.attempt

        def record(conn: sqlite3.Connection) -> bool:
            params = {
                "id": delivery.id,
                "owner": owner,
                "attempt": attempt.attempt,
                "state": result.state.value,
                "next_attempt_at": result.next_attempt_at,
                "now": now_ms(),
            }
            if conn.execute(q.RECORD_ATTEMPT, params).rowcount != 1:
                return False
            conn.execute(
                q.INSERT_ATTEMPT,
                (
                    delivery.id,
                    attempt.attempt,
                    attempt.started_at,
                    attempt.status_code,
                    attempt.latency_ms,
                    attempt.error,
                ),
            )
            return True

        return await self._writer.submit(record)

    @_unavailable_on_error
    async def deliveries_of_task(self, task_id: str) -> list[Delivery]:
        rows = self._reader.execute(q.DELIVERIES_OF_TASK, (task_id,)).fetchall()
        return [delivery_from_row(row, self._attempts(row[0])) for row in rows]

    def _attempts(self, delivery_id: str) -> tuple[DeliveryAttempt, ...]:
        rows = self._reader.execute(q.ATTEMPTS_OF_DELIVERY, (delivery_id,)).fetchall()
        return tuple(DeliveryAttempt(*row) for row in rows)

    @_unavailable_on_error
    async def redeliver(self, delivery_id: str) -> bool:
        """Send a finished delivery again, same id, as a fresh run of the retry schedule;
        False when it is still pending (already on its way)."""

        def again(conn: sqlite3.Connection) -> bool:
            return conn.execute(q.REDELIVER, {"id": delivery_id, "now": now_ms()}).rowcount == 1

        def after(sent: bool) -> None:
            if sent:
                self.hub.deliveries_added()

        return await self._writer.submit(again, after)

    # -- keys ----------------------------------------------------------------
    @_unavailable_on_error
    async def insert_key(self, key: ApiKey) -> None:
        row = key_row(key)

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(q.INSERT_KEY, row)
            record_new_balance(conn, key.id, None, key.credits, key.created_at)

        await self._writer.submit(insert)

    @_unavailable_on_error
    async def get_key_by_hash(self, key_hash: str) -> ApiKey | None:
        row = self._reader.execute(q.GET_KEY_BY_HASH, (key_hash,)).fetchone()
        return key_from_row(row) if row is not None else None

    @_unavailable_on_error
    async def get_key(self, key_id: str) -> ApiKey | None:
        row = self._reader.execute(q.GET_KEY, (key_id,)).fetchone()
        return key_from_row(row) if row is not None else None

    @_unavailable_on_error
    async def list_keys(self) -> list[ApiKey]:
        return [key_from_row(row) for row in self._reader.execute(q.LIST_KEYS).fetchall()]

    @_unavailable_on_error
    async def update_key(self, key_id: str, changes: KeyChanges) -> ApiKey | None:
        def update(conn: sqlite3.Connection) -> ApiKey | None:
            row = conn.execute(q.GET_KEY, (key_id,)).fetchone()
            if row is None:
                return None
            updated = msgspec.structs.replace(
                key_from_row(row),
                **{
                    f: v for f in changes.__struct_fields__ if (v := getattr(changes, f)) is not msgspec.UNSET
                },
            )
            conn.execute(
                q.UPDATE_KEY,
                (
                    updated.name,
                    int(updated.disabled),
                    updated.expires_at,
                    models_json(updated.models),
                    updated.webhook_secret_version,
                    updated.credits,
                    updated.rate_limit,
                    updated.max_concurrent,
                    key_id,
                ),
            )
            # Read and written in one writer transaction: no charge slips in between, so the
            # ledger's difference is exact. (PostgreSQL: read the row FOR UPDATE.)
            record_new_balance(conn, key_id, key_from_row(row).credits, updated.credits, now_ms())
            return updated

        return await self._writer.submit(update)

    @_unavailable_on_error
    async def add_credits(self, key_id: str, amount: int) -> ApiKey | None:
        def add(conn: sqlite3.Connection) -> ApiKey | None:
            if not add_credits(conn, key_id, amount, now_ms()):
                return None
            return key_from_row(conn.execute(q.GET_KEY, (key_id,)).fetchone())

        return await self._writer.submit(add)

    # -- ledger ----------------------------------------------------------------
    @_unavailable_on_error
    async def list_ledger(self, key_id: str, before: int | None, limit: int) -> list[LedgerEntry]:
        params = {"key_id": key_id, "before": before if before is not None else 2**63 - 1, "limit": limit}
        return [ledger_from_row(row) for row in self._reader.execute(q.LIST_LEDGER, params).fetchall()]
