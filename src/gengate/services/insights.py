"""What the console's usage, models and health pages show: a key's spend per day and model,
each model's load and run times, the workers' leases, the callbacks that are failing.

Each figure is one store query (:mod:`gengate.store.console_base`); what is left here is the
arithmetic over it (percentiles, throughput), so every page reads the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec

from gengate.domain.clock import now_ms
from gengate.domain.keys import ApiKey
from gengate.store.base import Store
from gengate.store.console_base import DailyUsage, DeliveryHealth, WorkerLeases

DAY_MS = 86_400_000
HOUR_MS = 3_600_000


class ModelStats(msgspec.Struct, frozen=True):
    """A model over the last window: `pending` and `processing` now, `completed` successes in
    the window, per minute (`throughput`), and the 50th and 95th percentile run times (ms;
    None with no success)."""

    model: str
    pending: int
    processing: int
    completed: int
    throughput: float
    p50_ms: int | None
    p95_ms: int | None


def percentile(sorted_values: Sequence[int], fraction: float) -> int | None:
    """Nearest-rank percentile of ascending values; None for none."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


class Insights:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def usage_by_day(self, key: ApiKey, days: int) -> list[DailyUsage]:
        """The key's tasks and spend per UTC day and model, the last `days` days (today too)."""
        first_day = now_ms() // DAY_MS - (days - 1)
        return await self.store.usage_by_day(key.id, first_day * DAY_MS)

    async def model_stats(self, models: Sequence[str], window_ms: int = HOUR_MS) -> list[ModelStats]:
        """Every model of `models` (and any other the store knows of), over the last window."""
        loads = {load.model: load for load in await self.store.model_loads(now_ms() - window_ms)}
        stats = []
        for model in [*models, *sorted(set(loads) - set(models))]:
            load = loads.get(model)
            times = load.run_times if load is not None else ()
            stats.append(
                ModelStats(
                    model=model,
                    pending=load.pending if load is not None else 0,
                    processing=load.processing if load is not None else 0,
                    completed=len(times),
                    throughput=len(times) / (window_ms / 60_000),
                    p50_ms=percentile(times, 0.5),
                    p95_ms=percentile(times, 0.95),
                )
            )
        return stats

    async def workers(self) -> list[WorkerLeases]:
        return await self.store.worker_leases()

    async def deliveries(self, window_ms: int = DAY_MS) -> DeliveryHealth:
        return await self.store.delivery_health(now_ms() - window_ms)
