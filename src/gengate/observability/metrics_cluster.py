"""Gauges read from elsewhere at scrape time: the cluster's queues, and the database pool.

Queue depth and running tasks are the whole cluster's (every API and worker process shares the
store), so any API process can tell them; counting them costs a store read, so a process reads
them at most once a second, however often it is scraped, and several scrapes at once share one
read. A collector's `collect` is synchronous, so the read happens before the render
(:meth:`ClusterLoad.refresh`) and `collect` serves what it holds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gengate.store.console_base import ModelLoad

log = logging.getLogger(__name__)

#: The shortest time between two reads of the queues by one process.
CLUSTER_MAX_AGE_S = 1.0
#: Longest a scrape waits for that read; past it the scrape answers the last values.
CLUSTER_READ_TIMEOUT_S = 2.0


class ClusterLoad(Collector):
    """`gengate_queue_depth{model}` and `gengate_tasks_running{model}`: pending and processing
    tasks over the whole cluster; every model of the catalogue has a series, 0 when idle."""

    def __init__(
        self,
        read: Callable[[], Awaitable[Sequence[ModelLoad]]],
        models: Iterable[str],
        *,
        max_age_s: float = CLUSTER_MAX_AGE_S,
        read_timeout_s: float = CLUSTER_READ_TIMEOUT_S,
    ) -> None:
        self._read = read
        self._models = tuple(models)
        self._max_age_s = max_age_s
        self._read_timeout_s = read_timeout_s
        self._loads: dict[str, ModelLoad] = {}
        self._read_at: float | None = None
        self._lock = asyncio.Lock()
        #: Store reads made: what tests check the once-a-second bound with.
        self.reads = 0

    def _fresh(self) -> bool:
        return self._read_at is not None and time.monotonic() - self._read_at < self._max_age_s

    async def refresh(self) -> None:
        """Read the store unless the last reading is under `max_age_s` old. A failed or slow
        read (past `read_timeout_s`) keeps the last values, so the scrape still answers; the
        next scrape past `max_age_s` tries again."""
        if self._fresh():
            return
        async with self._lock:
            if self._fresh():  # another scrape read meanwhile
                return
            self._read_at = time.monotonic()
            self.reads += 1
            try:
                async with asyncio.timeout(self._read_timeout_s):
                    loads = await self._read()
            except Exception as exc:
                log.warning("metrics: reading the queues from the store failed: %r", exc)
                return
            self._loads = {load.model: load for load in loads}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "gengate_queue_depth",
            "Pending tasks of each model over the whole cluster (read at most once a second).",
            labels=["model"],
        )
        running = GaugeMetricFamily(
            "gengate_tasks_running",
            "Processing tasks of each model over the whole cluster (read at most once a second).",
            labels=["model"],
        )
        for model in sorted(set(self._models) | set(self._loads)):
            load = self._loads.get(model)
            depth.add_metric([model], float(load.pending if load else 0))
            running.add_metric([model], float(load.processing if load else 0))
        yield depth
        yield running


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A connection pool now: connections `in_use`, open (`size`), and at most (`max_size`)."""

    in_use: int
    size: int
    max_size: int


class PoolCollector(Collector):
    """`gengate_db_pool_connections{state}` and `gengate_db_pool_max_connections`: the
    PostgreSQL pool of this process (nothing while the store is closed, or on SQLite)."""

    def __init__(self, stats: Callable[[], PoolStats | None]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = self._stats()
        if stats is None:
            return
        connections = GaugeMetricFamily(
            "gengate_db_pool_connections",
            "Database connections of this process's pool: in use (running a statement) or idle.",
            labels=["state"],
        )
        connections.add_metric(["in_use"], float(stats.in_use))
        connections.add_metric(["idle"], float(stats.size - stats.in_use))
        yield connections
        yield GaugeMetricFamily(
            "gengate_db_pool_max_connections",
            "Most connections this process's pool opens (GENGATE_DATABASE_POOL_SIZE).",
            value=float(stats.max_size),
        )
