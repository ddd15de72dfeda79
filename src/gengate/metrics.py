"""Prometheus metrics, served at `/metrics`.

One registry per gateway, not the library's global one, so that tests and embedding
applications can run several gateways in one process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gengate.observability.metrics_cluster import ClusterLoad, PoolCollector, PoolStats
from gengate.observability.metrics_http import HttpMetrics
from gengate.observability.metrics_lite import LiteCounter, LiteHistogram
from gengate.observability.metrics_tasks import TaskMetrics
from gengate.providers.server_pool import SERVER_STATES, ServerState
from gengate.store.base import Store

#: The states a provider's circuit breaker reports, one gauge series each.
CIRCUIT_STATES = ("closed", "open", "half_open")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # Counted at every callback attempt: the lite kinds (see metrics_lite).
        self.webhook_attempts = LiteCounter(
            "gengate_webhook_attempts",
            "Callback attempts by outcome: delivered, retry, failed.",
            ["outcome"],
            registry=self.registry,
        )
        self.webhook_latency = LiteHistogram(
            "gengate_webhook_latency_seconds",
            "Time from sending a callback to the receiver's answer.",
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.webhook_delay = LiteHistogram(
            "gengate_webhook_delivery_delay_seconds",
            "Time from a task's completion to its callback's delivery.",
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 10, 60, 600, 3600, 86400),
        )
        self.webhook_lag = LiteHistogram(
            "gengate_webhook_delivery_lag_seconds",
            "Time from a callback attempt falling due to its delivery: the sender's backlog.",
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
        )
        self.tasks = TaskMetrics(self.registry)
        self.http = HttpMetrics(self.registry)
        self.cluster: ClusterLoad | None = None

    def watch_store(self, store: Store, models: Iterable[str]) -> None:
        """Export the cluster's queues (read from `store` at most once a second, see
        :meth:`refresh`) and, on PostgreSQL, this process's connection pool."""
        self.cluster = ClusterLoad(store.model_counts, models)
        self.registry.register(self.cluster)
        self.watch_pool(store)

    def watch_pool(self, store: Store) -> None:
        """Export this process's PostgreSQL pool (a standalone worker has it, not the queues)."""
        from gengate.store.postgres.store import PostgresStore  # noqa: PLC0415 - asyncpg only when used

        if not isinstance(store, PostgresStore):
            return
        driver = store.driver

        def stats() -> PoolStats | None:
            found = driver.pool_stats()
            return None if found is None else PoolStats(*found)

        self.registry.register(PoolCollector(stats))

    async def refresh(self) -> None:
        """Bring the store-read gauges up to date before a scrape (cheap within a second)."""
        if self.cluster is not None:
            await self.cluster.refresh()

    def watch_circuits(self, states: Callable[[], Mapping[str, str]]) -> None:
        """Export the providers' circuit states, read from `states` at each scrape."""
        self.registry.register(_CircuitCollector(states))

    def watch_servers(self, states: Callable[[], Mapping[str, Sequence[ServerState]]]) -> None:
        """Export the model servers of each pool (cog, ComfyUI), read from `states` at each scrape."""
        self.registry.register(_ServerCollector(states))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _CircuitCollector(Collector):
    """`gengate_provider_circuit_state{provider, state}`: 1 for the state the circuit is in."""

    def __init__(self, states: Callable[[], Mapping[str, str]]) -> None:
        self._states = states

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "gengate_provider_circuit_state",
            "Circuit breaker of each upstream provider: 1 for its current state (open: skipped).",
            labels=["provider", "state"],
        )
        for provider, current in sorted(self._states().items()):
            for state in CIRCUIT_STATES:
                family.add_metric([provider, state], 1.0 if state == current else 0.0)
        yield family


class _ServerCollector(Collector):
    """`gengate_model_server_state{provider, url, state}` (1 for its state), and the runs each
    server has of ours (`gengate_model_server_busy`) out of its slots (`..._capacity`)."""

    def __init__(self, states: Callable[[], Mapping[str, Sequence[ServerState]]]) -> None:
        self._states = states

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = GaugeMetricFamily(
            "gengate_model_server_state",
            "Each model server of a pool: 1 for its state (down: skipped; starting: not set up yet).",
            labels=["provider", "url", "state"],
        )
        busy = GaugeMetricFamily(
            "gengate_model_server_busy", "Runs of ours on each model server now.", labels=["provider", "url"]
        )
        capacity = GaugeMetricFamily(
            "gengate_model_server_capacity",
            "Runs each model server takes at once.",
            labels=["provider", "url"],
        )
        for provider, servers in self._states().items():
            for server in servers:
                for name in SERVER_STATES:
                    state.add_metric([provider, server.url, name], 1.0 if name == server.state else 0.0)
                busy.add_metric([provider, server.url], server.busy)
                capacity.add_metric([provider, server.url], server.capacity)
        yield from (state, busy, capacity)
