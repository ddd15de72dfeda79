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
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server

from gengate import heap
from gengate.domain.catalogue import Catalogue
from gengate.metrics import Metrics
from gengate.providers.registry import close_providers
from gengate.runtime import build_core
from gengate.settings import Settings
from gengate.startup import StartupError, reason
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


def serve_metrics(metrics: Metrics, host: str, port: int) -> WSGIServer:
    """prometheus-client's own server, in a thread: a worker has no HTTP server of its own."""
    try:
        server, _thread = start_http_server(port, host, registry=metrics.registry)
    except OSError as exc:
        raise StartupError(
            f"the worker's metrics cannot be served on {host}:{port}: {reason(exc)}; "
            "choose another --metrics-port (or --metrics-host)"
        ) from None
    log.info("worker metrics at http://%s:%d/metrics", host, server.server_port)
    return server


async def run_worker(  # noqa: PLR0917 - the CLI's flags, passed on
    settings: Settings,
    models: Sequence[str],
    slots: int,
    grace_s: float,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
) -> None:
    """Run until SIGTERM or SIGINT. With `metrics_port`, this worker's own metrics (its runs,
    saves, ends and database pool) are served at `http://metrics_host:metrics_port/metrics`;
    the cluster's queue gauges come from the API processes' `/metrics`."""
    core = build_core(settings)
    metrics = Metrics()
    metrics.watch_pool(core.store)
    pool = WorkerPool(
        store=core.store,
        hub=core.hub,
        catalogue=select_models(core.catalogue, models),
        providers=core.providers,
        files=core.files,
        slots=slots,
        lease_ms=int(settings.lease_s * 1000),
        metrics=metrics.tasks,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await core.store.open()
    server = None
    try:
        if metrics_port is not None:
            server = serve_metrics(metrics, metrics_host, metrics_port)
        await pool.start()
        heap.settle_after_start()
        log.info(
            "worker %s running %s with %d slots", pool.owner, ", ".join(s.id for s in pool.catalogue), slots
        )
        await stop.wait()
        log.info("worker %s draining (grace %.0f s)", pool.owner, grace_s)
        await pool.stop(grace_s)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        await close_providers(core.providers)
        await core.files.close()
        await core.store.close()
    log.info("worker %s stopped", pool.owner)
