"""How full each model's queue is, known cheaply enough to ask on every submit.

Counting the pending tasks of a model costs time in proportion to the queue, so doing it in every
submit's transaction makes a deep queue slower to fill the deeper it gets. The gauge counts at
most every `max_age_s` and adds the submits this process made since; only when that estimate
comes near the cap does the submit ask the store for the exact count in its transaction. So the
cap stays exact where it matters, and far from it a submit pays nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from gengate.store.base import Store


@dataclass
class _Reading:
    depth: int
    at: float
    added: int = 0


@dataclass
class QueueGauge:
    store: Store
    max_age_s: float = 0.5
    _readings: dict[str, _Reading] = field(default_factory=dict)

    async def near(self, model: str, cap: int) -> bool:
        """Whether the queue may be within a tenth of `cap` (at least 10 tasks) of it."""
        reading = self._readings.get(model)
        now = time.monotonic()
        if reading is None or now - reading.at > self.max_age_s:
            reading = _Reading(await self.store.queue_depth(model), now)
            self._readings[model] = reading
        return reading.depth + reading.added >= cap - max(cap // 10, 10)

    def added(self, model: str) -> None:
        reading = self._readings.get(model)
        if reading is not None:
            reading.added += 1
