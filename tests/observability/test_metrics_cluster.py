"""The cluster's queue gauges are read from the store at most once per `max_age_s` per process,
however many scrapes come (together or one after another), and a failed read keeps the last
values; the PostgreSQL pool's connections are exported from the real pool."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx

from gengate.metrics import Metrics
from gengate.observability.metrics_cluster import ClusterLoad
from gengate.runtime import Gateway
from gengate.settings import Settings
from gengate.store.console_base import ModelLoad
from metrics_scrape import parse, total


class CountingStore:
    """The one store call the gauge makes, counted; it answers what `loads` holds, or fails."""

    def __init__(self) -> None:
        self.calls = 0
        self.loads: Sequence[ModelLoad] = [ModelLoad("a", pending=2, processing=1)]
        self.fail = False

    async def model_counts(self) -> Sequence[ModelLoad]:
        self.calls += 1
        await asyncio.sleep(0.01)  # concurrent scrapes overlap this read
        if self.fail:
            raise ConnectionError("store down")
        return self.loads


def gauges(load: ClusterLoad) -> dict[tuple[str, str], float]:
    return {(s.name, s.labels["model"]): s.value for family in load.collect() for s in family.samples}


async def test_many_scrapes_within_max_age_share_one_read() -> None:
    store = CountingStore()
    load = ClusterLoad(store.model_counts, ["a", "b"], max_age_s=3600)
    await asyncio.gather(*(load.refresh() for _ in range(10)))
    for _ in range(10):
        await load.refresh()
    assert store.calls == 1
    assert gauges(load) == {
        ("gengate_queue_depth", "a"): 2,
        ("gengate_queue_depth", "b"): 0,
        ("gengate_tasks_running", "a"): 1,
        ("gengate_tasks_running", "b"): 0,
    }


async def test_past_max_age_the_store_is_read_again_and_a_failure_keeps_the_last_values() -> None:
    store = CountingStore()
    load = ClusterLoad(store.model_counts, ["a"], max_age_s=0)
    await load.refresh()
    store.loads = [ModelLoad("a", pending=5), ModelLoad("new-model", processing=3)]
    await load.refresh()
    assert store.calls == 2
    assert gauges(load)[("gengate_queue_depth", "a")] == 5
    assert gauges(load)[("gengate_tasks_running", "new-model")] == 3
    store.fail = True
    await load.refresh()
    assert store.calls == 3
    assert gauges(load)[("gengate_queue_depth", "a")] == 5


async def test_the_gateway_reads_its_queues_once_for_scrapes_within_a_second(gateway: Gateway) -> None:
    reads: list[int] = []
    real = gateway.store.model_counts

    async def counted() -> list[ModelLoad]:
        reads.append(1)
        return await real()

    cluster = gateway.metrics.cluster
    assert cluster is not None
    cluster._read = counted  # the real store read, counted
    transport = httpx.ASGITransport(app=gateway.asgi())
    async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as http:
        answers = await asyncio.gather(*(http.get("/metrics") for _ in range(20)))
    assert all(answer.status_code == 200 for answer in answers)
    # Twenty scrapes at once: one read (a second one only if the twenty took over a second).
    assert 1 <= len(reads) <= 2
    assert total(parse(answers[-1].text), "gengate_queue_depth", model="demo-echo") == 0


async def test_the_postgres_pool_is_exported(settings: Settings, pg_url: str) -> None:
    gateway = Gateway(settings.model_copy(update={"database_url": pg_url, "workers": 0}))
    metrics = Metrics()
    metrics.watch_pool(gateway.store)
    assert total(parse(metrics.render().decode()), "gengate_db_pool_max_connections") == 0  # closed
    async with gateway.running():
        samples = parse(gateway.metrics.render().decode())
        assert total(samples, "gengate_db_pool_max_connections") == settings.database_pool_size
        assert total(samples, "gengate_db_pool_connections", state="in_use") == 0
        assert total(samples, "gengate_db_pool_connections", state="idle") >= 1
        pool = gateway.store.driver.pool  # type: ignore[attr-defined]
        async with pool.acquire():
            held = parse(gateway.metrics.render().decode())
        assert total(held, "gengate_db_pool_connections", state="in_use") == 1


async def test_a_store_read_that_hangs_does_not_hold_the_scrape() -> None:
    store = CountingStore()
    load = ClusterLoad(store.model_counts, ["a"], max_age_s=0, read_timeout_s=0.05)
    await load.refresh()
    hung = asyncio.Event()

    async def never() -> Sequence[ModelLoad]:
        await hung.wait()
        return []

    load._read = never
    await asyncio.wait_for(load.refresh(), 30)  # gives up on the read, keeps the last values
    assert gauges(load)[("gengate_queue_depth", "a")] == 2
