"""The store's logic, written once above a :class:`~gengate.store.sql.Driver`.

`SQLiteStore` and `PostgresStore` are this class over their drivers; what they add is only
what truly differs (how a claim takes rows, PostgreSQL's batched submit and success). Every
task that ends goes through :meth:`_end` (the domain's :class:`Ending`, then the outbox row
and the refund in the same transaction), and its allowed-from state is in the statement, from
the transition table (see :mod:`gengate.store.queries`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import orjson

from gengate.domain import endings
from gengate.domain.clock import now_ms
from gengate.domain.deliveries import AttemptResult, Delivery, DeliveryAttempt, new_delivery_id
from gengate.domain.endings import Ending, Outcome, Requeue, Succeeded
from gengate.domain.keys import ApiKey, KeyChanges
from gengate.domain.ledger import LedgerEntry
from gengate.domain.task import Claim, Task, TaskLog
from gengate.store import transactions as tx
from gengate.store.base import Admission, ExpiredResult, Idempotency, Lease, ReapedTask, TaskQuery
from gengate.store.console import SqlConsole
from gengate.store.handover import CallbackIntake, CallbackLease
from gengate.store.notify import ChangeHub
from gengate.store.rows import (
    claimed_task_from_row,
    delivery_from_row,
    file_names,
    files_json,
    key_from_row,
    key_params,
    ledger_from_row,
    succeeded_task,
    task_from_row,
)
from gengate.store.sql import NOTHING, Changes, Driver, Tx, count, row, rows, value


def _task_changed(task_id: str) -> Any:
    return lambda changed: Changes(tasks=(task_id,)) if changed else NOTHING


def _failure(ending: Ending) -> dict[str, str | None]:
    """The `failCode` and message an ending writes (the domain chose them)."""
    return {"fail_code": ending.fail_code, "fail_msg": ending.fail_msg}


def _ended(task: Task | None, handed: Delivery | None = None) -> Changes:
    """A callback handed over is this process's sender's already: no sender is woken to claim it."""
    if task is None:
        return NOTHING
    return Changes(tasks=(task.id,), deliveries=bool(task.callback_url) and handed is None)


def _ended_handing(ended: tuple[Task | None, Delivery | None]) -> Changes:
    return _ended(*ended)


class SqlStore(SqlConsole):
    """Tasks, callbacks, keys and the ledger; the console's part in `SqlConsole`."""

    def __init__(self, driver: Driver, hub: ChangeHub, first_callback_delay_ms: int) -> None:
        self.driver = driver
        self.q = driver.queries
        self.hub = hub
        #: The first delay of the callback retry schedule: when a newly owed callback is due.
        self.first_callback_delay_ms = first_callback_delay_ms
        #: This process's callback sender while it runs: the callbacks of the tasks ending here
        #: are handed to it (:mod:`gengate.store.handover`).
        self.callback_intake: CallbackIntake | None = None

    async def open(self) -> None:
        await self.driver.open()

    async def close(self) -> None:
        await self.driver.close()

    # -- tasks ---------------------------------------------------------------
    async def insert_task(
        self, task: Task, idempotency: Idempotency | None = None, admission: Admission | None = None
    ) -> Task:
        return await self.driver.write(
            tx.insert_task(self.q, task, idempotency, admission), lambda _: Changes(work=(task.model,))
        )

    async def list_tasks(self, key_id: str, query: TaskQuery) -> list[Task]:
        filters: list[str] = []
        params: dict[str, Any] = {"key_id": key_id, "limit": query.limit}
        for column, given, operator in (
            ("state", query.state, "="),
            ("model", query.model, "="),
            ("create_time", query.since, ">="),
            ("create_time", query.until, "<"),
        ):
            if given is not None:
                filters.append(f"AND {column} {operator} :{column}_{len(filters)}")
                params[f"{column}_{len(filters) - 1}"] = given
        if query.before is not None:
            filters.append("AND (create_time, id) < (:before_time, :before_id)")
            params["before_time"], params["before_id"] = query.before
        listing = self.q["list_tasks"].filled(filters=" ".join(filters))
        return [task_from_row(found) for found in await self.driver.fetch(rows(listing, **params))]

    async def queue_position(self, task: Task) -> int:
        """Pending tasks of the same model ahead of this one."""
        ahead = value(
            self.q["queue_position"],
            model=task.model,
            priority=task.priority,
            create_time=task.create_time,
            id=task.id,
        )
        return int(await self.driver.fetch(ahead))

    async def get_task(self, task_id: str) -> Task | None:
        found = await self.driver.fetch(row(self.q["get_task"], id=task_id))
        return task_from_row(found) if found is not None else None

    async def claim(
        self,
        capacity: Mapping[str, int],
        owner: str,
        limit: int,
        lease_ms: int,
        caps: Mapping[str, int] | None = None,
    ) -> list[Claim]:
        # No model's walk takes more rows than the claim can: rows locked and then not taken
        # would be skipped by concurrent claims for nothing.
        wanted = {model: min(free, limit) for model, free in capacity.items() if free > 0}
        if not wanted or limit <= 0:
            return []
        claimed = await self.driver.claim(wanted, owner, limit, lease_ms, caps or {})
        tasks = sorted(map(claimed_task_from_row, claimed), key=lambda t: (-t.priority, t.create_time))
        return [Claim(task, task.attempts) for task in tasks]

    async def trace_context(self, task_id: str) -> str | None:
        found = await self.driver.fetch(row(self.q["get_trace_context"], id=task_id))
        return found[0] if found is not None else None

    async def heartbeat(self, task_id: str, owner: str, attempt: int, lease_ms: int) -> Lease:
        beat = row(self.q["heartbeat"], id=task_id, owner=owner, attempt=attempt, expires=now_ms() + lease_ms)
        held = await self.driver.write_one(beat)
        if held is None:
            return Lease.LOST
        return Lease.CANCEL_REQUESTED if held[0] else Lease.HELD

    async def cancel(self, task_id: str) -> Task | None:
        """Cancel: a pending task ends `failed`/`CANCELED` at once (callback owed in the same
        transaction); a running one is marked for its worker to stop. Returns the task as it
        then stands, unchanged when it had already finished."""

        def changes(result: tuple[Task | None, bool]) -> Changes:
            task, running = result
            if task is None:
                return NOTHING
            return Changes(cancel=(task.id,)) if running else _ended(task)

        task, _running = await self.driver.write(self._cancel(task_id), changes)
        return task

    def _cancel(self, task_id: str) -> Tx[tuple[Task | None, bool]]:
        ending = endings.ending_of(endings.canceled())
        now = now_ms()
        ended = yield row(self.q["cancel_pending"], id=task_id, now=now, **_failure(ending))
        if ended is not None:
            return (yield from self._end(task_from_row(ended), ending, now)), False
        running = yield row(self.q["request_cancel"], id=task_id)
        if running is not None:
            return task_from_row(running), True
        found = yield row(self.q["get_task"], id=task_id)
        return (task_from_row(found) if found is not None else None), False

    def _end(self, task: Task, ending: Ending, now: int) -> Tx[Task]:
        """The one place a task's end is completed: its callback owed, its refund if due."""
        return tx.end_task(self.q, task, ending, now, self.first_callback_delay_ms)

    async def set_progress(self, task_id: str, owner: str, attempt: int, progress: int) -> bool:
        stmt = count(self.q["set_progress"], id=task_id, owner=owner, attempt=attempt, progress=progress)
        return bool(await self.driver.write_one(stmt, _task_changed(task_id)) == 1)

    async def append_logs(self, task_id: str, owner: str, attempt: int, lines: Sequence[TaskLog]) -> bool:
        batch = orjson.dumps([(log.at, log.line) for log in lines]).decode()
        stmt = count(self.q["append_logs"], id=task_id, owner=owner, attempt=attempt, lines=batch)
        # Watchers of the task (a stream of its logs) look again; long-polls see no change.
        return bool(await self.driver.write_one(stmt, _task_changed(task_id)) > 0)

    async def task_logs(self, task_id: str) -> list[TaskLog]:
        found = await self.driver.fetch(rows(self.q["task_logs"], id=task_id))
        return [TaskLog(at, line, attempt) for at, line, attempt in found]

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
        intake = self.callback_intake if callback else None
        lease = intake.lease() if intake is not None else None
        handed: Delivery | None = None
        try:
            task, handed = await self.driver.write(
                self._finish(task_id, owner, attempt, outcome, lease, claimed), _ended_handing
            )
        finally:
            if intake is not None and lease is not None and handed is None:
                intake.unlease()
        if intake is not None and handed is not None and task is not None:
            intake.take(handed, task)
        return task

    def _finish(  # noqa: PLR0917 - the fence, the outcome, and what the caller already holds
        self,
        task_id: str,
        owner: str,
        attempt: int,
        outcome: Outcome,
        lease: CallbackLease | None = None,
        claimed: Task | None = None,
    ) -> Tx[tuple[Task | None, Delivery | None]]:
        ending = endings.ending_of(outcome)
        now = now_ms()
        fence = {"id": task_id, "owner": owner, "attempt": attempt, "now": now}
        if isinstance(outcome, Succeeded):
            files, output = files_json(outcome.files), outcome.output_json
            if claimed is not None:
                changed = yield row(self.q["finish_success_claimed"], **fence, files=files, output=output)
                ended = None if changed is None else succeeded_task(claimed, outcome, now, *changed)
            else:
                done = yield row(self.q["finish_success"], **fence, files=files, output=output)
                ended = None if done is None else task_from_row(done)
        else:
            done = yield row(self.q["finish_failure"], **fence, **_failure(ending))
            ended = None if done is None else task_from_row(done)
        if ended is None:
            return None, None
        return (
            yield from tx.end_task_handing(
                self.q, ended, ending, now, self.first_callback_delay_ms, lease=lease
            )
        )

    async def retry_later(self, task_id: str, owner: str, attempt: int, run_after_ms: int) -> bool:
        stmt = count(self.q["retry_later"], id=task_id, owner=owner, attempt=attempt, run_after=run_after_ms)
        # Workers find it by their slow poll once its backoff is over.
        return bool(await self.driver.write_one(stmt, _task_changed(task_id)) == 1)

    async def set_upstream(self, task_id: str, owner: str, attempt: int, upstream: str) -> bool:
        stmt = count(self.q["set_upstream"], id=task_id, owner=owner, attempt=attempt, upstream=upstream)
        return bool(await self.driver.write_one(stmt) == 1)

    async def release(self, task_id: str, owner: str, attempt: int) -> bool:
        stmt = row(self.q["release"], id=task_id, owner=owner, attempt=attempt)

        def changes(released: Any) -> Changes:
            return Changes(tasks=(task_id,), work=(released[0],)) if released is not None else NOTHING

        return await self.driver.write_one(stmt, changes) is not None

    async def reap_expired(self, now_ms: int, max_attempts: Mapping[str, int]) -> list[ReapedTask]:
        def changes(reaped: list[ReapedTask]) -> Changes:
            return Changes(
                tasks=[task.task_id for task in reaped],
                work=("*",) if any(task.requeued for task in reaped) else (),
                deliveries=any(not task.requeued for task in reaped),
            )

        return await self.driver.write(self._reap(now_ms, max_attempts), changes)

    def _reap(self, now: int, max_attempts: Mapping[str, int]) -> Tx[list[ReapedTask]]:
        reaped = []
        for task_id, model, attempts, cancel_requested in (yield rows(self.q["expired_leases"], now=now)):
            decision = endings.lease_expired(attempts, max_attempts.get(model, 1), bool(cancel_requested))
            if isinstance(decision, Requeue):
                if (yield count(self.q["requeue"], id=task_id, now=now)) == 1:
                    reaped.append(ReapedTask(task_id, True, model))
                continue
            lost = yield row(self.q["fail_lost"], id=task_id, now=now, **_failure(decision))
            if lost is not None:
                ended = task_from_row(lost)
                yield from self._end(ended, decision, now)
                reaped.append(ReapedTask(task_id, False, model, ended))
        return reaped

    async def expired_results(self, complete_before_ms: int, limit: int) -> list[ExpiredResult]:
        found = await self.driver.fetch(
            rows(self.q["expired_results"], before=complete_before_ms, limit=limit)
        )
        return [ExpiredResult(result[0], file_names(result[1])) for result in found]

    async def mark_files_removed(self, task_ids: Sequence[str]) -> None:
        await self.driver.mark_files_removed(task_ids)

    async def queue_depth(self, model: str) -> int:
        return int(await self.driver.fetch(value(self.q["queue_depth"], model=model)))

    # -- callbacks ---------------------------------------------------------------
    async def claim_deliveries(self, owner: str, limit: int, lease_ms: int) -> list[Delivery]:
        """Due deliveries, leased to `owner` so that one sender at a time works on each."""
        now = now_ms()
        stmt = rows(self.q["claim_deliveries"], owner=owner, expires=now + lease_ms, now=now, limit=limit)
        return [delivery_from_row(tuple(found)) for found in await self.driver.write_one(stmt)]

    async def next_delivery_due(self) -> int | None:
        due = await self.driver.fetch(value(self.q["next_delivery_due"], now=now_ms()))
        return int(due) if due is not None else None

    async def record_attempt(self, delivery: Delivery, owner: str, result: AttemptResult) -> bool:
        """Record one attempt and what follows; False when the lease on it was lost meanwhile."""
        [recorded] = await self.record_attempts(owner, [(delivery, result)])
        return recorded

    async def record_attempts(
        self, owner: str, attempts: Sequence[tuple[Delivery, AttemptResult]]
    ) -> list[bool]:
        """A batch of attempts in one transaction (SQLite: one operation of the group commit)."""
        return await self.driver.write(self._record_attempts(owner, attempts))

    def _record_attempts(
        self, owner: str, attempts: Sequence[tuple[Delivery, AttemptResult]]
    ) -> Tx[list[bool]]:
        """Two statements for the batch, whatever its size (two per attempt cost 10 us each)."""
        if not attempts:
            return []
        batch = attempts_json(attempts)
        found = yield rows(self.q["record_attempts"], attempts=batch, owner=owner, now=now_ms())
        recorded = {found_row[0] for found_row in found}
        if recorded:
            ids = orjson.dumps(list(recorded)).decode()
            yield count(self.q["insert_attempts"], attempts=batch, recorded=ids)
        return [delivery.id in recorded for delivery, _result in attempts]

    async def callback_tasks(self, task_ids: Sequence[str]) -> dict[str, tuple[Task, str | None]]:
        ids = orjson.dumps(list(task_ids)).decode()
        found = await self.driver.fetch(rows(self.q["callback_tasks"], ids=ids))
        return {task.id: (task, row[-1]) for row in found for task in (task_from_row(row),)}

    async def defer_deliveries(self, owner: str, delivery_ids: Sequence[str], until_ms: int) -> int:
        return await self.driver.write(self._defer_deliveries(owner, delivery_ids, until_ms))

    def _defer_deliveries(self, owner: str, delivery_ids: Sequence[str], until: int) -> Tx[int]:
        deferred = 0
        for delivery_id in delivery_ids:
            deferred += yield count(self.q["defer_delivery"], id=delivery_id, owner=owner, until=until)
        return deferred

    async def deliveries_of_task(self, task_id: str) -> list[Delivery]:
        return await self.driver.read(self._deliveries_of_task(task_id))

    def _deliveries_of_task(self, task_id: str) -> Tx[list[Delivery]]:
        deliveries = []
        for found in (yield rows(self.q["deliveries_of_task"], task_id=task_id)):
            history = yield rows(self.q["attempts_of_delivery"], delivery_id=found[0])
            deliveries.append(delivery_from_row(tuple(found), tuple(DeliveryAttempt(*a) for a in history)))
        return deliveries

    async def add_start_callback(self, task_id: str, owner: str, attempt: int) -> bool:
        stmt = count(
            self.q["insert_start_delivery"],
            delivery_id=new_delivery_id(),
            id=task_id,
            owner=owner,
            attempt=attempt,
            now=now_ms(),
        )
        return bool(await self.driver.write_one(stmt, lambda added: Changes(deliveries=added == 1)) == 1)

    async def add_logs_callback(self, task_id: str, owner: str, attempt: int, gap_ms: int) -> bool:
        added = await self.driver.write(
            self._add_logs_callback(task_id, owner, attempt, gap_ms), lambda added: Changes(deliveries=added)
        )
        return bool(added)

    def _add_logs_callback(self, task_id: str, owner: str, attempt: int, gap_ms: int) -> Tx[bool]:
        now = now_ms()
        last = yield value(self.q["last_delivery_at"], id=task_id)
        added = yield count(
            self.q["insert_logs_delivery"],
            delivery_id=new_delivery_id(),
            id=task_id,
            owner=owner,
            attempt=attempt,
            now=now,
            due=now if last is None else max(now, last + gap_ms),
        )
        return bool(added == 1)

    async def redeliver(self, delivery_id: str) -> bool:
        """Send a finished delivery again, same id, as a fresh run of the retry schedule;
        False when it is still pending (already on its way)."""
        stmt = count(self.q["redeliver"], id=delivery_id, now=now_ms())
        return bool(await self.driver.write_one(stmt, lambda sent: Changes(deliveries=sent == 1)) == 1)

    # -- keys ----------------------------------------------------------------
    async def insert_key(self, key: ApiKey) -> None:
        def insert() -> Tx[None]:
            yield count(self.q["insert_key"], **key_params(key))
            yield from tx.record_new_balance(self.q, key.id, None, key.credits, key.created_at)

        await self.driver.write(insert())

    async def get_key_by_hash(self, key_hash: str) -> ApiKey | None:
        found = await self.driver.fetch(row(self.q["get_key_by_hash"], key_hash=key_hash))
        return key_from_row(tuple(found)) if found is not None else None

    async def get_key(self, key_id: str) -> ApiKey | None:
        found = await self.driver.fetch(row(self.q["get_key"], id=key_id))
        return key_from_row(tuple(found)) if found is not None else None

    async def list_keys(self) -> list[ApiKey]:
        return [key_from_row(tuple(found)) for found in await self.driver.fetch(rows(self.q["list_keys"]))]

    async def update_key(self, key_id: str, changes: KeyChanges) -> ApiKey | None:
        return await self.driver.write(self._update_key(key_id, changes))

    def _update_key(self, key_id: str, changes: KeyChanges) -> Tx[ApiKey | None]:
        # The key is read (PostgreSQL: locked) and written in one transaction: no charge slips
        # in between, so the ledger's difference is exact.
        found = yield row(self.q["get_key_for_update"], id=key_id)
        if found is None:
            return None
        before = key_from_row(tuple(found))
        given = {f: v for f in changes.__struct_fields__ if (v := getattr(changes, f)) is not msgspec.UNSET}
        updated = msgspec.structs.replace(before, **given)
        yield count(self.q["update_key"], **key_params(updated))
        yield from tx.record_new_balance(self.q, key_id, before.credits, updated.credits, now_ms())
        return updated

    async def add_credits(self, key_id: str, amount: int) -> ApiKey | None:
        def add() -> Tx[ApiKey | None]:
            if not (yield from tx.add_credits(self.q, key_id, amount, now_ms())):
                return None
            found = yield row(self.q["get_key"], id=key_id)
            return key_from_row(tuple(found)) if found is not None else None

        return await self.driver.write(add())

    # -- ledger ----------------------------------------------------------------
    async def list_ledger(self, key_id: str, before: int | None, limit: int) -> list[LedgerEntry]:
        cursor = before if before is not None else 2**63 - 1
        found = await self.driver.fetch(
            rows(self.q["list_ledger"], key_id=key_id, before=cursor, limit=limit)
        )
        return [ledger_from_row(entry) for entry in found]


def attempts_json(attempts: Sequence[tuple[Delivery, AttemptResult]]) -> str:
    """A batch of attempts as the JSON array the backends' `record_attempts` statements read."""
    return orjson.dumps(
        [
            {
                "id": delivery.id,
                "state": result.state.value,
                "next_attempt_at": result.next_attempt_at,
                **msgspec.structs.asdict(result.attempt),
            }
            for delivery, result in attempts
        ]
    ).decode()
