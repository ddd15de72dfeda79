"""`make bench`: the end-to-end drain. N `demo-echo` tasks submitted over HTTP as fast as 64
keep-alive connections go and run by gengate's workers; then the submit-to-claim latency at a
moderate rate; on PostgreSQL, the same number of no-op jobs through pgqueuer on the same server
as the peer.

    python -m bench.drain [--tasks 5000]            # SQLite in a temp data folder
    python -m bench.drain --pg                      # PostgreSQL: a cluster of its own (fsync on)
    python -m bench.drain --pg-url postgresql://... # an existing, disposable database
    python -m bench.drain --pg --layout split       # an API process and a worker process

Layouts on the 2 cores:
- `one-process` (the default): one `gengate serve` with its in-process workers, pinned to
  CPU 0; the load (this process) on CPU 1. The whole gateway on one core.
- `split`, the scale-out shape: `gengate serve --workers 0` pinned to CPU 0, and `gengate
  worker` pinned to CPU 1, beside the load.
PostgreSQL is not pinned. Figures come from the task table, read behind the server's back:
tasks/s is N over the span from the first task's `create_time` to the last one's
`complete_time`; claim latency is `start_time - create_time` (ms) of each task submitted at the
moderate rate.

Exit status: 0 when every phase ran cleanly (a figure below its bar is reported, not failed);
1 when a server does not start, a submit is refused, or a task does not succeed in time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import uvloop

from bench.backend import Backend, Connection, open_backend
from bench.pgq_peer import run_peer
from bench.run import (
    LOAD_CPU,
    RESULTS,
    SERVER_CPU,
    BenchError,
    Target,
    gengate_command,
    gengate_executable,
    gengate_setup,
    serve,
    start_pinned,
    stop,
    tail,
    write_results,
)
from bench.submitter import Answers, post_request, submit_at_rate, submit_many

CONNECTIONS = 64
LAYOUTS = ("one-process", "split")
#: Slots of the standalone worker in the split layout.
WORKER_SLOTS = 64
#: The issue's bars: end-to-end tasks/s at or above, claim latency (ms) at or below.
TASKS_PER_S_BAR = 1000.0
CLAIM_P50_BAR_MS = 5.0
CLAIM_P99_BAR_MS = 25.0
POLL_S = 0.1
T = TypeVar("T")


def now_ms() -> int:
    return int(time.time() * 1000)


def run_async(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return uvloop.run(make())


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive") if len(ordered) > 1 else ordered * 99
    return {
        "p50": round(statistics.median(ordered), 2),
        "p99": round(cuts[98], 2),
        "max": round(ordered[-1], 2),
    }


def check_answers(answers: Answers, expected: int, phase: str) -> None:
    if answers.failed or len(answers.task_ids) != expected:
        raise BenchError(
            f"{phase}: {len(answers.task_ids)} of {expected} submits accepted; {answers.statuses}"
        )


def wait_drained(backend: Backend, conn: Connection, timeout_s: float) -> None:
    """Until no task is pending or running (both states have a partial index: a cheap count)."""
    deadline = time.monotonic() + timeout_s
    sql = "SELECT count(*) FROM tasks WHERE state IN ('pending', 'processing')"
    while (left := backend.scalar(conn, sql)) > 0:
        if time.monotonic() > deadline:
            raise BenchError(f"{left} tasks still pending or running after {timeout_s:.0f}s")
        time.sleep(POLL_S)


def finished(backend: Backend, conn: Connection, since_ms: int, expected: int) -> tuple[int, int]:
    """(first create_time, last complete_time) of the tasks created since `since_ms`, checking
    that there are `expected` of them and that every one succeeded."""
    count, succeeded, first, last = backend.rows(
        conn,
        "SELECT count(*), sum(CASE WHEN state = 'success' THEN 1 ELSE 0 END), min(create_time), "
        f"max(complete_time) FROM tasks WHERE create_time >= {since_ms:d}",
    )[0]
    if count != expected or succeeded != expected:
        raise BenchError(f"of {expected} tasks submitted, {count} stored and {succeeded} succeeded")
    return int(first), int(last)


@dataclass
class Session:
    """A running gateway under load: its `port`, the submit `request` bytes, and a connection
    `conn` to its task table; a phase waits at most `timeout_s` for its tasks."""

    backend: Backend
    conn: Connection
    port: int
    request: bytes
    timeout_s: float

    def settle(self, since_ms: int, expected: int) -> tuple[int, int]:
        wait_drained(self.backend, self.conn, self.timeout_s)
        return finished(self.backend, self.conn, since_ms, expected)


def drain(session: Session, tasks: int) -> dict[str, Any]:
    since = now_ms()
    answers = run_async(lambda: submit_many(session.port, session.request, tasks, CONNECTIONS))
    check_answers(answers, tasks, "drain")
    first, last = session.settle(since, tasks)
    seconds = (last - first) / 1000
    return {
        "tasks": tasks,
        "connections": CONNECTIONS,
        "submit_per_s": round(tasks / answers.seconds, 1),
        "submit_ms": percentiles(answers.latencies_ms),
        "seconds": round(seconds, 3),
        "tasks_per_s": round(tasks / seconds, 1),
        "pass": tasks / seconds >= TASKS_PER_S_BAR,
    }


def claim_latency(session: Session, rate: float, seconds: float) -> dict[str, Any]:
    tasks = max(1, round(rate * seconds))
    since = now_ms()
    answers = run_async(lambda: submit_at_rate(session.port, session.request, tasks, rate))
    check_answers(answers, tasks, "claim latency")
    session.settle(since, tasks)
    sql = f"SELECT start_time - create_time FROM tasks WHERE create_time >= {since:d}"
    claim = percentiles([float(row[0]) for row in session.backend.rows(session.conn, sql)])
    return {
        "rate_per_s": rate,
        "tasks": tasks,
        "achieved_rate_per_s": round(tasks / answers.seconds, 1),
        "submit_ms": percentiles(answers.latencies_ms),
        "claim_ms": claim,
        "pass": claim["p50"] <= CLAIM_P50_BAR_MS and claim["p99"] <= CLAIM_P99_BAR_MS,
    }


def run_name(backend: Backend, layout: str) -> str:
    return backend.name if layout == LAYOUTS[0] else f"{backend.name}-{layout}"


@contextlib.contextmanager
def standalone_worker(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`gengate worker` for demo-echo on the load's CPU, beside an API-only server."""
    argv = [gengate_executable(), "worker", "--models", "demo-echo", "--concurrency", str(WORKER_SLOTS)]
    proc = start_pinned(argv, LOAD_CPU, env["GENGATE_DATA_DIR"], env, log_path)
    try:
        yield proc
        if proc.poll() is not None:
            raise BenchError(f"the worker exited during the run:\n{tail(log_path)}")
    finally:
        stop(proc)


def measure_gengate(backend: Backend, args: argparse.Namespace) -> dict[str, Any]:
    split = args.layout == "split"

    def command(port: int, data: Path) -> tuple[list[str], dict[str, str]]:
        argv, env = gengate_command(port, data)
        return [*argv, "--workers", "0"] if split else argv, env | backend.env()

    target = Target(f"gengate-{backend.name}", command, gengate_setup)
    where = f"API on CPU {SERVER_CPU}, worker on CPU {LOAD_CPU}" if split else f"CPU {SERVER_CPU}"
    print(f"[{target.name}] starting ({args.layout}: {where}) ...", flush=True)
    log_path = RESULTS / f"drain-{run_name(backend, args.layout)}.log"
    with contextlib.ExitStack() as stack:
        client, env = stack.enter_context(serve(target, log_path, start_timeout_s=60))
        if split:
            stack.enter_context(standalone_worker(env | backend.env(), log_path.with_suffix(".worker.log")))
        workload = gengate_setup(client, env)
        port = client.base_url.port
        assert port is not None
        request = post_request(port, workload.submit_path, workload.authorization, workload.submit_body)
        conn = backend.connect(Path(env["GENGATE_DATA_DIR"]))
        session = Session(backend, conn, port, request, args.timeout)
        stack.callback(conn.close)
        if args.warmup:
            print(f"[{target.name}] warm-up: {args.warmup} tasks ...", flush=True)
            drain(session, args.warmup)
        print(f"[{target.name}] drain: {args.tasks} tasks ...", flush=True)
        drained = drain(session, args.tasks)
        print(f"[{target.name}] claim latency: {args.rate:g}/s for {args.rate_seconds:g}s ...", flush=True)
        claimed = claim_latency(session, args.rate, args.rate_seconds)
    return {"layout": args.layout, "drain": drained, "claim": claimed}


def report(result: dict[str, Any]) -> None:
    drained, claimed = result["drain"], result["claim"]
    claim = claimed["claim_ms"]
    print()
    print(f"layout: {result['layout']}")
    print(f"{'backend':<12}{'tasks':>7}{'submit/s':>10}{'tasks/s':>10}{'claim p50/p99 ms':>19}{'at':>8}")
    print(
        f"{result['backend']:<12}{drained['tasks']:>7}{drained['submit_per_s']:>10,.0f}"
        f"{drained['tasks_per_s']:>10,.0f}{claim['p50']:>12.1f}/{claim['p99']:<6.1f}{claimed['rate_per_s']:>6g}/s"
    )
    verdict = "PASS" if drained["pass"] else "BELOW"
    print(f"end-to-end: {drained['tasks_per_s']:,.0f} tasks/s (bar >= {TASKS_PER_S_BAR:,.0f}) {verdict}")
    verdict = "PASS" if claimed["pass"] else "ABOVE"
    print(
        f"claim latency: p50 {claim['p50']:.1f} ms, p99 {claim['p99']:.1f} ms (bars <= 5 / 25 ms) {verdict}"
    )
    if peer := result.get("peer"):
        print(
            f"peer pgqueuer: {peer['jobs']} no-op jobs, {peer['jobs_per_s']:,.0f} jobs/s "
            f"(enqueue in batches of {peer['enqueue_batch']}, dequeue batches of {peer['dequeue_batch']})"
        )
        print(f"gengate/pgqueuer: {result['peer_ratio']:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=5000, help="tasks in the drain (default 5000)")
    parser.add_argument("--warmup", type=int, default=500, help="tasks drained first, not measured")
    parser.add_argument("--rate", type=float, default=200.0, help="submits/s of the claim-latency phase")
    parser.add_argument("--rate-seconds", type=float, default=10.0, help="length of that phase")
    parser.add_argument("--layout", choices=LAYOUTS, default=LAYOUTS[0], help="where gengate runs (above)")
    parser.add_argument("--timeout", type=float, default=300.0, help="longest wait for a phase's tasks")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--pg", action="store_true", help="PostgreSQL: start a cluster of our own")
    where.add_argument("--pg-url", help="PostgreSQL: this (disposable) database")
    parser.add_argument("--no-peer", action="store_true", help="skip pgqueuer on PostgreSQL")
    parser.add_argument("--peer-only", action="store_true", help="only pgqueuer (needs --pg or --pg-url)")
    parser.add_argument("--peer-enqueue-batch", type=int, default=100, help="jobs per pgqueuer enqueue")
    parser.add_argument("--peer-dequeue-batch", type=int, default=10, help="jobs per pgqueuer dequeue")
    args = parser.parse_args(argv)
    if min(args.tasks, args.rate, args.rate_seconds) <= 0 or args.warmup < 0:
        parser.error("--tasks, --rate and --rate-seconds must be positive, --warmup at least 0")
    if args.peer_only and not (args.pg or args.pg_url):
        parser.error("--peer-only needs --pg or --pg-url")
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {int(LOAD_CPU)})
    RESULTS.mkdir(parents=True, exist_ok=True)

    load_before = round(os.getloadavg()[0], 2)  # other work on the machine skews every figure
    with open_backend(pg=args.pg, pg_url=args.pg_url) as backend:
        result: dict[str, Any] = {"backend": backend.name}
        try:
            if not args.peer_only:
                result |= measure_gengate(backend, args)
            if backend.url and not args.no_peer:
                print(f"[pgqueuer] {args.tasks} no-op jobs, consumer on CPU {SERVER_CPU} ...", flush=True)
                result["peer"] = run_peer(
                    backend.url,
                    args.tasks,
                    enqueue_batch=args.peer_enqueue_batch,
                    dequeue_batch=args.peer_dequeue_batch,
                    consumer_cpu=SERVER_CPU,
                    log_path=RESULTS / "drain-pgqueuer.log",
                    timeout_s=args.timeout,
                )
        except (BenchError, TimeoutError) as exc:
            print(f"bench failed: {exc}", file=sys.stderr)
            return 1
    if "drain" in result and "peer" in result:
        result["peer_ratio"] = round(result["drain"]["tasks_per_s"] / result["peer"]["jobs_per_s"], 3)
    if "drain" in result:
        report(result)
    elif "peer" in result:
        print(f"peer pgqueuer: {result['peer']}")

    write_results(f"drain-{run_name(backend, args.layout)}", result, load_before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
