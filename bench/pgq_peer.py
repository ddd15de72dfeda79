"""The drain benchmark's peer: the same number of no-op jobs through pgqueuer on the same PostgreSQL.

A consumer process (pinned where gengate runs, one `QueueManager`, pgqueuer's default dequeue
batch) runs a no-op entrypoint while this process enqueues the jobs in batches, as pgqueuer's docs
and its own benchmark do. Jobs/s is taken from pgqueuer's log table, like gengate's tasks/s from
the task table: from the first job queued to the last one done, both on the database's clock.

    python -m bench.pgq_peer consume URL [--batch 10]     # the consumer alone (used by run_peer)
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
ENTRYPOINT = "bench_noop"
WARM_TIMEOUT_S = 60.0
POLL_S = 0.1


async def consume(url: str, batch_size: int) -> None:
    """Run no-op jobs until SIGTERM or SIGINT."""
    from pgqueuer import AsyncpgDriver, Job, Queries, QueueManager

    conn = await asyncpg.connect(url)
    manager = QueueManager(Queries(AsyncpgDriver(conn)))

    @manager.entrypoint(ENTRYPOINT)
    async def noop(job: Job) -> None:
        return None

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, manager.shutdown.set)
    # Log rows stay in the log table (no folding into statistics), where the bench counts them.
    await manager.run(batch_size=batch_size, log_aggregation_interval=timedelta(0))


async def _successful(conn: asyncpg.Connection, first_job: int) -> int:
    sql = "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful' AND job_id >= $1"
    count: int = await conn.fetchval(sql, first_job)
    return count


async def _wait_done(conn: asyncpg.Connection, first_job: int, jobs: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while await _successful(conn, first_job) < jobs:
        if time.monotonic() > deadline:
            done = await _successful(conn, first_job)
            raise TimeoutError(f"pgqueuer ran {done} of {jobs} jobs within {timeout_s:.0f}s")
        await asyncio.sleep(POLL_S)


def run_peer(
    url: str,
    jobs: int,
    *,
    enqueue_batch: int,
    dequeue_batch: int,
    consumer_cpu: str,
    log_path: Path,
    timeout_s: float,
) -> dict[str, Any]:
    """Enqueue `jobs` no-op jobs in batches while a consumer process runs them; the figures."""
    import uvloop

    uvloop.run(_install(url))
    argv = ["taskset", "-c", consumer_cpu, sys.executable, "-m", "bench.pgq_peer", "consume", url]
    argv += ["--batch", str(dequeue_batch)]
    with log_path.open("wb") as log:
        consumer = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        enqueue_s, seconds = uvloop.run(_enqueue_and_wait(url, jobs, enqueue_batch, timeout_s))
    finally:
        consumer.send_signal(signal.SIGTERM)
        try:
            consumer.wait(timeout=30)
        except subprocess.TimeoutExpired:
            consumer.kill()
            consumer.wait()
    return {
        "jobs": jobs,
        "enqueue_batch": enqueue_batch,
        "dequeue_batch": dequeue_batch,
        "enqueue_jobs_per_s": round(jobs / enqueue_s, 1),
        "seconds": round(seconds, 3),
        "jobs_per_s": round(jobs / seconds, 1),
    }


async def _install(url: str) -> None:
    from pgqueuer import AsyncpgDriver, Queries

    conn = await asyncpg.connect(url)
    try:
        queries = Queries(AsyncpgDriver(conn))
        if not await queries.schema_is_installed():
            await queries.install()
    finally:
        await conn.close()


async def _enqueue_and_wait(url: str, jobs: int, batch: int, timeout_s: float) -> tuple[float, float]:
    """(seconds spent enqueueing, seconds from the first job queued to the last one done)."""
    from pgqueuer import AsyncpgDriver, Queries

    conn = await asyncpg.connect(url)
    try:
        queries = Queries(AsyncpgDriver(conn))
        # One job first: the consumer is up, connected and warm before the clock starts.
        (warm,) = await queries.enqueue(ENTRYPOINT, None)
        await _wait_done(conn, warm, 1, WARM_TIMEOUT_S)
        first_job: int | None = None
        started = time.perf_counter()
        for start in range(0, jobs, batch):
            size = min(batch, jobs - start)
            ids = await queries.enqueue([ENTRYPOINT] * size, [None] * size, [0] * size)
            first_job = min(ids) if first_job is None else first_job
        enqueue_s = time.perf_counter() - started
        assert first_job is not None
        await _wait_done(conn, first_job, jobs, timeout_s)
        span = await conn.fetchval(
            """SELECT extract(epoch FROM max(created) FILTER (WHERE status = 'successful')
                                       - min(created) FILTER (WHERE status = 'queued'))
                 FROM pgqueuer_log WHERE job_id >= $1""",
            first_job,
        )
        return enqueue_s, float(span)
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("consume", help="run the no-op consumer until SIGTERM")
    run.add_argument("url")
    run.add_argument("--batch", type=int, default=10, help="jobs per dequeue (pgqueuer's default: 10)")
    args = parser.parse_args(argv)
    import uvloop  # installed with uvicorn[standard]

    uvloop.run(consume(args.url, args.batch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
