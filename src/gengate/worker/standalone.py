"""`gengate worker`: a process that only runs tasks, beside API processes that share the store.

It claims the models it is told (all by default), holds leases, reaps the leases of dead
workers, and on SIGTERM or SIGINT stops claiming and lets running tasks finish for the grace
period; what is still running then goes back to the queue. Nothing is lost either way: a
worker killed outright leaves leases that the reaper of another worker returns.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence

from gengate import heap
from gengate.domain.catalogue import Catalogue
from gengate.providers.registry import close_providers
from gengate.runtime import build_core
from gengate.settings import Settings
from gengate.worker.pool import WorkerPool

log = logging.getLogger(__name__)


class UnknownModelsError(ValueError):
    """The worker was asked for models this configuration does not have."""


def select_models(catalogue: Catalogue, models: Sequence[str]) -> Catalogue:
    if not models:
        return catalogue
    unknown = [model for model in models if model not in catalogue]
    if unknown:
        known = ", ".join(spec.id for spec in catalogue)
        raise UnknownModelsError(f"unknown model(s) {', '.join(unknown)}; known: {known}")
    return Catalogue({model: catalogue.get(model) for model in models})


async def run_worker(settings: Settings, models: Sequence[str], slots: int, grace_s: float) -> None:
    core = build_core(settings)
    pool = WorkerPool(
        store=core.store,
        hub=core.hub,
        catalogue=select_models(core.catalogue, models),
        providers=core.providers,
        files=core.files,
        slots=slots,
        lease_ms=int(settings.lease_s * 1000),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await core.store.open()
    try:
        await pool.start()
        heap.settle_after_start()
        log.info(
            "worker %s running %s with %d slots", pool.owner, ", ".join(s.id for s in pool.catalogue), slots
        )
        await stop.wait()
        log.info("worker %s draining (grace %.0f s)", pool.owner, grace_s)
        await pool.stop(grace_s)
    finally:
        await close_providers(core.providers)
        await core.files.close()
        await core.store.close()
    log.info("worker %s stopped", pool.owner)
