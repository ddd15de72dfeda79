"""Wake-ups for the other processes of the cluster, sent after commit and many to one NOTIFY.

The store tells this process's hub at once and queues the same news here; a flush task sends
what gathered meanwhile as one `pg_notify` per channel (ids comma-joined, within the 8000-byte
payload limit) from a connection of its own. Notifying inside each writing transaction would
serialise their commits on PostgreSQL's notify-queue lock. A wake-up lost to a crash between
commit and flush only delays the other processes until their slow polls or long-poll timeouts:
news, never state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from gengate.background import spawn

log = logging.getLogger(__name__)

TASK, WORK, CANCEL, DELIVERIES = "gengate_task", "gengate_work", "gengate_cancel", "gengate_deliveries"
#: Stay under PostgreSQL's 8000-byte payload limit.
MAX_PAYLOAD = 7000

_SEND = "SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS x(c, p)"


def batch_payloads(items: set[str]) -> list[str]:
    """Comma-joined payloads of at most MAX_PAYLOAD characters (ids hold no comma)."""
    payloads: list[str] = []
    current: list[str] = []
    size = 0
    for item in sorted(items):
        if current and size + len(item) + 1 > MAX_PAYLOAD:
            payloads.append(",".join(current))
            current, size = [], 0
        current.append(item)
        size += len(item) + 1
    if current:
        payloads.append(",".join(current))
    return payloads


class PgNotifier:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._pending: dict[str, set[str]] = {}
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None
        #: The backend pid our notifications come from: our own listener skips them.
        self.server_pid: int | None = None

    async def start(self) -> None:
        self._task = spawn(self._run(), "announcing changes", name="gengate-pg-notify")

    async def stop(self) -> None:
        if self._task is not None:
            self._ready.set()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._conn is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1):
                    await self._conn.close()
            self._conn = None

    def publish(self, channel: str, item: str = "") -> None:
        self._pending.setdefault(channel, set()).add(item)
        self._ready.set()

    async def _run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            pending, self._pending = self._pending, {}
            channels: list[str] = []
            payloads: list[str] = []
            for channel, items in pending.items():
                for payload in batch_payloads(items):
                    channels.append(channel)
                    payloads.append(payload)
            try:
                conn = await self._connection()
                await conn.execute(_SEND, channels, payloads)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("could not announce %d change(s) to other processes: %s", len(payloads), exc)
                self._conn = None
                await asyncio.sleep(0.5)

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(self._dsn)
            self.server_pid = self._conn.get_server_pid()
        return self._conn
