"""Prometheus metrics, served at `/metrics`.

One registry per gateway, not the library's global one, so that tests and embedding
applications can run several gateways in one process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

#: The states a provider's circuit breaker reports, one gauge series each.
CIRCUIT_STATES = ("closed", "open", "half_open")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.webhook_attempts = Counter(
            "gengate_webhook_attempts",
            "Callback attempts by outcome: delivered, retry, failed.",
            ["outcome"],
            registry=self.registry,
        )
        self.webhook_latency = Histogram(
            "gengate_webhook_latency_seconds",
            "Time from sending a callback to the receiver's answer.",
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.webhook_delay = Histogram(
            "gengate_webhook_delivery_delay_seconds",
            "Time from a task's completion to its callback's delivery.",
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 10, 60, 600, 3600, 86400),
        )

    def watch_circuits(self, states: Callable[[], Mapping[str, str]]) -> None:
        """Export the providers' circuit states, read from `states` at each scrape."""
        self.registry.register(_CircuitCollector(states))

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
