"""The store interface every backend implements and every caller depends on.

Writes that change a task are fenced: a worker passes the `owner` and `attempt` of its
claim, and a write by a worker that lost its lease changes nothing and returns False/None.
All methods are async so that a networked backend (PostgreSQL) fits behind the same calls.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Protocol

import msgspec

from gengate.domain.deliveries import AttemptResult, Delivery
from gengate.domain.endings import Outcome
from gengate.domain.keys import ApiKey, KeyChanges
from gengate.domain.ledger import LedgerEntry
from gengate.domain.task import Claim, Task, TaskLog
from gengate.store.console_base import ConsoleStore
from gengate.store.handover import CallbackIntake


class Lease(enum.Enum):
    """What a heartbeat learns: the lease is still ours, lost, or its task should stop."""

    HELD = "held"
    LOST = "lost"
    CANCEL_REQUESTED = "cancel_requested"


#: How long an Idempotency-Key holds.
IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000


class Idempotency(msgspec.Struct, frozen=True):
    """A submit's `Idempotency-Key` and the hash of its request."""

    key: str
    request_hash: str


class Admission(msgspec.Struct, frozen=True, kw_only=True):
    """Caps a submit must pass, checked in the insert's transaction (so concurrent submits
    cannot all slip under them): `max_queue` pending tasks of the task's model (past it,
    `unavailable`), `max_concurrent` pending and processing tasks of its key (at it,
    `too_many_requests`). None: no cap."""

    max_queue: int | None = None
    max_concurrent: int | None = None


class TaskQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Filters of a task listing, newest first; `before` is the (create_time, id) cursor."""

    state: str | None = None
    model: str | None = None
    since: int | None = None
    until: int | None = None
    before: tuple[int, str] | None = None
    limit: int = 50


class ReapedTask(msgspec.Struct, frozen=True):
    """A task whose lease expired: back to the queue, or failed past its attempts. `model` is
    the task's; `ended` the task as it ended when it failed (for the metrics)."""

    task_id: str
    requeued: bool
    model: str = ""
    ended: Task | None = None


class ExpiredResult(msgspec.Struct, frozen=True):
    """A finished task past retention and the names of its files, so a file store removes
    exactly those instead of searching for them."""

    task_id: str
    names: tuple[str, ...]


class Store(ConsoleStore, Protocol):
    """Tasks, callbacks, keys and the ledger here; the web console's part in `ConsoleStore`."""

    #: This process's callback sender while it runs (:mod:`gengate.store.handover`).
    callback_intake: CallbackIntake | None

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    # -- tasks ---------------------------------------------------------------
    async def insert_task(
        self, task: Task, idempotency: Idempotency | None = None, admission: Admission | None = None
    ) -> Task:
        """Durable before it returns: the caller hands out the id only afterwards. With an
        idempotency key seen in the last 24 h for the same request, the earlier task instead
        (charged nothing again); for another request, `Conflict`. Then, in the same
        transaction: the `admission` caps (`Unavailable`, `TooManyRequests`), and the charge of
        `task.charge` credits, taken only if a limited key's balance covers it (`UsedUp`) and
        written to the ledger. A concurrent duplicate never makes two tasks, and concurrent
        submits never overdraw a balance."""
        ...

    async def list_tasks(self, key_id: str, query: TaskQuery) -> list[Task]: ...

    async def queue_position(self, task: Task) -> int: ...

    async def get_task(self, task_id: str) -> Task | None: ...

    async def trace_context(self, task_id: str) -> str | None:
        """The `traceparent` stored at the task's submit (None: not traced, or no such task)."""
        ...

    async def claim(
        self,
        capacity: Mapping[str, int],
        owner: str,
        limit: int,
        lease_ms: int,
        caps: Mapping[str, int] | None = None,
    ) -> list[Claim]:
        """Move up to `limit` pending tasks to processing, priority then age first, and at most
        `capacity[model]` of each model; `caps[model]` bounds the model's running tasks over the
        whole cluster. Tasks waiting out a retry backoff are not claimed."""
        ...

    async def heartbeat(self, task_id: str, owner: str, attempt: int, lease_ms: int) -> Lease: ...

    async def cancel(self, task_id: str) -> Task | None: ...

    async def set_progress(self, task_id: str, owner: str, attempt: int, progress: int) -> bool: ...

    async def append_logs(self, task_id: str, owner: str, attempt: int, lines: Sequence[TaskLog]) -> bool:
        """Keep log lines of a running claim (fenced like progress); False when the claim is gone."""
        ...

    async def task_logs(self, task_id: str) -> list[TaskLog]:
        """A task's log lines, oldest first (every attempt's)."""
        ...

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
        """Record the one completion of a task; None when the claim is no longer current.
        A failure refunds the task's charge in the same transaction (as do `cancel` of a
        pending task and the reaper's WORKER_LOST): once per task, never for a success.
        `callback=False` says the task has no `callback_url` (its claim tells the worker), so
        no sending slot is held for a hand-over while the ending commits. `claimed`, the task
        as the worker claimed it, spares a store reading the whole row back."""
        ...

    async def retry_later(self, task_id: str, owner: str, attempt: int, run_after_ms: int) -> bool:
        """Back to the queue after a transient failure, claimable again from `run_after_ms`."""
        ...

    async def set_upstream(self, task_id: str, owner: str, attempt: int, upstream: str) -> bool:
        """Keep a relayed task's upstream reference (JSON text) with the task."""
        ...

    async def release(self, task_id: str, owner: str, attempt: int) -> bool:
        """Hand a claimed task back to the queue (a worker shutting down); fenced like finish."""
        ...

    async def reap_expired(self, now_ms: int, max_attempts: Mapping[str, int]) -> list[ReapedTask]: ...

    async def expired_results(self, complete_before_ms: int, limit: int) -> list[ExpiredResult]:
        """Finished tasks whose files are past retention and not yet removed."""
        ...

    async def mark_files_removed(self, task_ids: Sequence[str]) -> None: ...

    async def queue_depth(self, model: str) -> int: ...

    # -- callbacks -----------------------------------------------------------
    # A task that ends with a `callback_url` owes a delivery, written by `finish` (and by the
    # reaper) in the same transaction that ends the task.
    async def add_start_callback(self, task_id: str, owner: str, attempt: int) -> bool:
        """Owe the task's `callback_url` a delivery now that it runs (Replicate's `start`
        event), fenced like progress and once per task; False when not owed (no URL, the claim
        is gone, or the task has a delivery already)."""
        ...

    async def add_logs_callback(self, task_id: str, owner: str, attempt: int, gap_ms: int) -> bool:
        """Owe the task's `callback_url` a delivery for new log lines (Replicate's `logs` event),
        fenced like progress: due `gap_ms` after the task's previous delivery at the soonest, and
        not owed while one still waits for its first attempt (that one shows the new lines)."""
        ...

    async def claim_deliveries(self, owner: str, limit: int, lease_ms: int) -> list[Delivery]: ...

    async def next_delivery_due(self) -> int | None:
        """Unix ms of the earliest pending delivery, so the sender sleeps exactly until then."""
        ...

    async def record_attempt(self, delivery: Delivery, owner: str, result: AttemptResult) -> bool: ...

    async def record_attempts(
        self, owner: str, attempts: Sequence[tuple[Delivery, AttemptResult]]
    ) -> list[bool]:
        """:meth:`record_attempt` for a batch, in one transaction: one result per attempt, in order."""
        ...

    async def callback_tasks(self, task_ids: Sequence[str]) -> dict[str, tuple[Task, str | None]]:
        """The tasks of a batch of callbacks (those that exist) with their submit's `traceparent`,
        in one read."""
        ...

    async def defer_deliveries(self, owner: str, delivery_ids: Sequence[str], until_ms: int) -> int:
        """Give claimed deliveries back unsent, due again at `until_ms`, no attempt counted (their
        receiver's host is busy); how many were still `owner`'s."""
        ...

    async def deliveries_of_task(self, task_id: str) -> list[Delivery]: ...

    async def redeliver(self, delivery_id: str) -> bool: ...

    # -- keys ----------------------------------------------------------------
    async def insert_key(self, key: ApiKey) -> None:
        """Store a new key; a starting balance (`credits`) is its first ledger row, a top-up."""
        ...

    async def get_key_by_hash(self, key_hash: str) -> ApiKey | None: ...

    async def get_key(self, key_id: str) -> ApiKey | None: ...

    async def list_keys(self) -> list[ApiKey]: ...

    async def update_key(self, key_id: str, changes: KeyChanges) -> ApiKey | None:
        """Apply `changes`; a new `credits` writes its difference to the ledger (a top-up)."""
        ...

    async def add_credits(self, key_id: str, amount: int) -> ApiKey | None:
        """Add `amount` (negative takes away) to a limited key's balance atomically, with its
        ledger row; None when there is no such key. `BadRequest` when the key is unlimited or
        the balance would leave 0..MAX_CREDITS."""
        ...

    # -- ledger ----------------------------------------------------------------
    async def list_ledger(self, key_id: str, before: int | None, limit: int) -> list[LedgerEntry]:
        """The key's ledger, newest first; `before` is the id of the last entry seen."""
        ...
