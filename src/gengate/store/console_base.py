"""What the web console asks of the store beyond the API's needs: its sessions, and the few
aggregates its usage, models and health pages draw (each one query, written for both backends).
"""

from __future__ import annotations

from typing import Protocol

import msgspec


class ConsoleSession(msgspec.Struct, frozen=True, kw_only=True):
    """A console sign-in. Fields: `id_hash` (SHA-256 of the cookie's session id), `key_id` (the
    key, or `admin:<fingerprint>` for the admin key), `csrf` (the session's synchronizer token),
    `created_at` and `expires_at` (Unix ms)."""

    id_hash: str
    key_id: str
    csrf: str
    created_at: int
    expires_at: int


class DailyUsage(msgspec.Struct, frozen=True):
    """One key's tasks of one model on one UTC day (`day`: days since 1970): how many, and the
    credits they cost (failed and canceled tasks are refunded, so they cost nothing)."""

    day: int
    model: str
    tasks: int
    spent: int


class ModelLoad(msgspec.Struct, frozen=True):
    """A model's tasks now (`pending`, `processing`) and the run times (ms) of its successes
    since the window's start, for throughput and percentiles."""

    model: str
    pending: int = 0
    processing: int = 0
    run_times: tuple[int, ...] = ()


class WorkerLeases(msgspec.Struct, frozen=True):
    """A worker as the store sees it: the tasks it holds under lease, when the oldest of them
    started, and when its latest lease runs out (Unix ms)."""

    owner: str
    running: int
    oldest_start: int | None
    lease_expires: int | None


class DeliveryHealth(msgspec.Struct, frozen=True):
    """Callbacks not going well: `retrying` (pending after a failed attempt) and `failed`
    (given up) since the window's start."""

    retrying: int
    failed: int


class ConsoleStore(Protocol):
    async def insert_session(self, session: ConsoleSession) -> None:
        """Store a new session, and drop the sessions that have expired."""
        ...

    async def get_session(self, id_hash: str, now: int) -> ConsoleSession | None:
        """The session, while it has not expired."""
        ...

    async def delete_session(self, id_hash: str) -> None: ...

    async def usage_by_day(self, key_id: str, since_ms: int) -> list[DailyUsage]: ...

    async def model_loads(self, since_ms: int) -> list[ModelLoad]: ...

    async def model_counts(self) -> list[ModelLoad]:
        """Each model's `pending` and `processing` tasks over the whole cluster (no run times):
        the queue gauges of `/metrics`."""
        ...

    async def worker_leases(self) -> list[WorkerLeases]: ...

    async def delivery_health(self, since_ms: int) -> DeliveryHealth: ...
