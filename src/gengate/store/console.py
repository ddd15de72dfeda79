"""The store's part for the web console, written once: sessions and the aggregates its pages
draw (the statements are in queries.sql)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from gengate.domain.clock import now_ms
from gengate.store.console_base import ConsoleSession, DailyUsage, DeliveryHealth, ModelLoad, WorkerLeases
from gengate.store.queries import Query
from gengate.store.sql import Driver, Tx, count, row, rows, value


def loads_from(
    pending: list[tuple[str, int]], processing: list[tuple[str, int]], run_times: list[tuple[str, int]]
) -> list[ModelLoad]:
    """The three row sets of the model queries as one record per model."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    times: dict[str, list[int]] = defaultdict(list)
    for model, number in pending:
        counts[model][0] = int(number)
    for model, number in processing:
        counts[model][1] = int(number)
    for model, cost in run_times:
        if cost is not None:
            times[model].append(int(cost))
    models = sorted(set(counts) | set(times))
    return [
        ModelLoad(model, counts[model][0], counts[model][1], tuple(sorted(times[model]))) for model in models
    ]


class SqlConsole:
    driver: Driver
    q: Mapping[str, Query]

    async def insert_session(self, session: ConsoleSession) -> None:
        def insert() -> Tx[None]:
            yield count(self.q["delete_expired_sessions"], now=now_ms())
            yield count(
                self.q["insert_session"], **{f: getattr(session, f) for f in session.__struct_fields__}
            )

        await self.driver.write(insert())

    async def get_session(self, id_hash: str, now: int) -> ConsoleSession | None:
        found = await self.driver.fetch(row(self.q["get_session"], id_hash=id_hash, now=now))
        if found is None:
            return None
        return ConsoleSession(
            id_hash=found[0], key_id=found[1], csrf=found[2], created_at=found[3], expires_at=found[4]
        )

    async def delete_session(self, id_hash: str) -> None:
        await self.driver.write_one(count(self.q["delete_session"], id_hash=id_hash))

    async def usage_by_day(self, key_id: str, since_ms: int) -> list[DailyUsage]:
        found = await self.driver.fetch(rows(self.q["usage_by_day"], key_id=key_id, since=since_ms))
        return [DailyUsage(int(r[0]), r[1], int(r[2]), int(r[3])) for r in found]

    async def model_loads(self, since_ms: int) -> list[ModelLoad]:
        return await self.driver.read(self._model_loads(since_ms))

    async def model_counts(self) -> list[ModelLoad]:
        return await self.driver.read(self._model_loads(None))

    def _model_loads(self, since_ms: int | None) -> Tx[list[ModelLoad]]:
        pending = yield rows(self.q["pending_by_model"])
        processing = yield rows(self.q["processing_by_model"])
        run_times = [] if since_ms is None else (yield rows(self.q["run_times_since"], since=since_ms))
        return loads_from(
            [(r[0], r[1]) for r in pending],
            [(r[0], r[1]) for r in processing],
            [(r[0], r[1]) for r in run_times],
        )

    async def worker_leases(self) -> list[WorkerLeases]:
        found = await self.driver.fetch(rows(self.q["worker_leases"]))
        return [WorkerLeases(r[0] or "?", int(r[1]), r[2], r[3]) for r in found]

    async def delivery_health(self, since_ms: int) -> DeliveryHealth:
        retrying = await self.driver.fetch(value(self.q["retrying_deliveries"]))
        failed = await self.driver.fetch(value(self.q["failed_deliveries_since"], since=since_ms))
        return DeliveryHealth(int(retrying), int(failed))
