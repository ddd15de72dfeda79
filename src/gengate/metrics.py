"""Prometheus metrics, served at `/metrics`.

One registry per gateway, not the library's global one, so that tests and embedding
applications can run several gateways in one process.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest


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

    def render(self) -> bytes:
        return generate_latest(self.registry)
