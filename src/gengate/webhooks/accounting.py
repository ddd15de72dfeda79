"""What a callback attempt counts in the metrics: attempts by outcome, the receiver's latency,
and for a delivery, how long after the task's end (delay) and after it was due (lag)."""

from __future__ import annotations

from gengate.domain.clock import now_ms
from gengate.domain.deliveries import Delivery, DeliveryState
from gengate.metrics import Metrics


def count_attempt(metrics: Metrics, state: DeliveryState, delivery: Delivery, latency_ms: int | None) -> None:
    outcome = {DeliveryState.PENDING: "retry"}.get(state, state.value)
    metrics.webhook_attempts.labels(outcome).inc()
    if latency_ms is not None:
        metrics.webhook_latency.observe(latency_ms / 1000)
    if state is DeliveryState.DELIVERED:
        now = now_ms()
        metrics.webhook_delay.observe(max(0, now - delivery.created_at) / 1000)
        due = delivery.next_attempt_at or delivery.created_at
        metrics.webhook_lag.observe(max(0, now - due) / 1000)
