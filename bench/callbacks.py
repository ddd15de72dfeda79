"""Callback delivery: how fast, and how soon after a task's completion, callbacks arrive.

gengate runs pinned to CPU 0 (`taskset -c 0`) in a fresh temporary data folder with
`GENGATE_WEBHOOK_ALLOW=127.0.0.0/8`; the receiver, a raw asyncio HTTP/1.1 server (an
`asyncio.Protocol` on uvloop: no framework, no ASGI), runs pinned to CPU 1, as does this process,
which submits the tasks (raw HTTP/1.1, `bench/submitter.py`). The receiver answers 200 and stamps
each callback with `time.time_ns()` when its whole body is in, keeping the body's
`data.completeTime`: both are wall clock on the same machine, so latency = arrival - completeTime
(ms; completeTime is whole ms).

1. latency: `--latency-tasks` (200) demo-echo callback tasks, one at a time (each callback awaited,
   then a short pause), so the gateway is idle: p50 and p99. Bar: p50 under 20 ms.
2. baseline: `--throughput-tasks` (10,000) demo-echo tasks WITHOUT callbacks submitted over 64
   connections, drained by the same gateway: tasks/s from the first task's `create_time` to the
   last one's `complete_time` (read from the task table, as `bench.drain` does).
3. throughput: the same number of tasks WITH callbacks, submitted the same way: deliveries/s from
   the first arrival to the last, completion-to-delivery p50/p99 under that load, and the ratio
   deliveries/s over the baseline's tasks/s (bar: >= 0.9x, deliveries keep up with the drain).

    python -m bench.callbacks [--latency-tasks 200] [--throughput-tasks 10000]

Figures go to `bench/results/latest.json` under `callbacks` (merged: the other figures stay).
`python -m bench.run` runs this after its own figures. Exit status 1 when a server does not start,
a callback is missing or duplicated, or an attempt other than a first-time delivery is counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import httpx
import orjson
import uvloop

from bench.backend import Backend
from bench.run import (
    LOAD_CPU,
    RESULTS,
    ROOT,
    SERVER_CPU,
    BenchError,
    Target,
    Workload,
    free_port,
    gengate_command,
    serve,
    stop,
    success,
    tail,
    wait_ready,
)
from bench.submitter import post_request, submit_many

BAR_P50_MS = 20.0
BAR_RATIO = 0.9
SUBMIT_PATH = "/api/v1/generateTask/demo-echo"
SUBMIT_CONNECTIONS = 64
#: Pause after each awaited callback of the latency run: the gateway is idle when the next comes.
IDLE_PAUSE_S = 0.02
ARRIVAL_WAIT_S = 5.0
THROUGHPUT_WAIT_S = 300.0
POLL_S = 0.05

Record = tuple[int, int | None, str | None, str | None]


# --- the receiver (its own process, on LOAD_CPU) ---------------------------------------------------
class Receiver(asyncio.Protocol):
    """HTTP/1.1 on a bare protocol: `POST` records (arrival ns, completeTime, taskId, webhook-id) and
    answers 200; `GET /count` answers how many arrived, `GET /records?since=N` the records from the
    N-th on. Pipelined and kept-alive requests are read in order."""

    records: ClassVar[list[Record]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport  # uvloop's transports are no asyncio.Transport subclass
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            length = re.search(rb"(?im)^content-length: *(\d+)", head)
            size = int(length[1]) if length else 0
            if len(self.buffer) < end + 4 + size:
                return
            body = self.buffer[end + 4 : end + 4 + size]
            self.buffer = self.buffer[end + 4 + size :]
            self.transport.write(self.answer(time.time_ns(), head, body))

    def answer(self, arrived: int, head: bytes, body: bytes) -> bytes:
        line = head.split(b"\r\n", 1)[0].split(b" ")
        if line[0] == b"POST":
            data = orjson.loads(body).get("data") or {}
            found = re.search(rb"(?im)^webhook-id: *(\S+)", head)
            webhook_id = found[1].decode() if found else None
            self.records.append((arrived, data.get("completeTime"), data.get("taskId"), webhook_id))
            return b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
        target = line[1].decode()
        if target.startswith("/count"):
            payload = str(len(self.records)).encode()
        elif target.startswith("/records"):
            since = int(dict(re.findall(r"(\w+)=(\d+)", target)).get("since", 0))
            payload = orjson.dumps(self.records[since:])
        else:  # /healthz and anything else: alive
            payload = b"ok"
        return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(payload) + payload


def serve_receiver(port: int) -> None:
    async def run() -> None:
        server = await asyncio.get_running_loop().create_server(Receiver, "127.0.0.1", port, backlog=1024)
        await server.serve_forever()

    uvloop.run(run())


@contextmanager
def receiver(log_path: Path) -> Iterator[tuple[httpx.Client, str]]:
    """The receiver process pinned to LOAD_CPU: a client of it and the callback URL."""
    port = free_port()
    argv = ["taskset", "-c", LOAD_CPU, sys.executable, "-m", "bench.callbacks", "--serve-receiver", str(port)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, trust_env=False) as client:
            wait_ready(client, proc, "receiver", log_path, 30)  # any GET answers, /healthz too
            yield client, f"http://127.0.0.1:{port}/callback"
    finally:
        stop(proc)


def arrivals(client: httpx.Client) -> int:
    return int(client.get("/count").text)


def records(client: httpx.Client, since: int = 0) -> list[list[Any]]:
    rows: list[list[Any]] = orjson.loads(client.get("/records", params={"since": since}).content)
    return rows


# --- gengate ----------------------------------------------------------------------------------
def callbacks_command(port: int, data: Path) -> tuple[list[str], dict[str, str]]:
    argv, env = gengate_command(port, data)
    return argv, env | {"GENGATE_WEBHOOK_ALLOW": "127.0.0.0/8"}


def callbacks_setup(client: httpx.Client, env: dict[str, str]) -> Workload:
    admin = {"Authorization": f"Bearer {env['GENGATE_ADMIN_KEY']}"}
    key = success(client.post("/admin/v1/keys", headers=admin, json={"name": "bench-callbacks"}))["key"]
    return Workload(f"Bearer {key}", "", SUBMIT_PATH)


TARGET = Target("callbacks", callbacks_command, callbacks_setup)


def submit_body(url: str | None, i: int) -> dict[str, Any]:
    if url is None:
        return {"request_type": "async", "input": {"mode": "echo", "data": i}}
    return {"request_type": "callback", "callback_url": url, "input": {"mode": "echo", "data": i}}


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile: the smallest value with at least p% of them at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def latencies_ms(rows: list[list[Any]]) -> list[float]:
    return [arrived / 1e6 - complete for arrived, complete, _task, _id in rows if complete is not None]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 50), 2),
        "p99_ms": round(percentile(values, 99), 2),
        "mean_ms": round(statistics.fmean(values), 2),
        "max_ms": round(max(values), 2),
    }


def check_once(rows: list[list[Any]], task_ids: list[str]) -> None:
    """Every task called back exactly once."""
    seen = [task for _arrived, _complete, task, _id in rows]
    duplicates = len(seen) - len(set(seen))
    missing = set(task_ids) - set(seen)
    if duplicates or missing:
        raise BenchError(f"{len(missing)} callbacks missing, {duplicates} duplicated")


def submit_all(gate: httpx.Client, auth: str, url: str | None, tasks: int) -> tuple[list[str], float]:
    """`tasks` submits over SUBMIT_CONNECTIONS kept-alive connections (the same body each: the
    echo's input is the same, the task ids differ); their ids and the seconds it took."""
    port = gate.base_url.port
    assert port is not None
    request = post_request(port, SUBMIT_PATH, auth, orjson.dumps(submit_body(url, 0)))
    answers = uvloop.run(submit_many(port, request, tasks, SUBMIT_CONNECTIONS))
    if answers.failed or len(answers.task_ids) != tasks:
        raise BenchError(f"{len(answers.task_ids)} of {tasks} submits accepted; {answers.statuses}")
    return answers.task_ids, answers.seconds


class CpuClock:
    """CPU seconds (user + system) of the gateway process, from /proc: what a phase cost it."""

    def __init__(self, port: int) -> None:
        self.pid: int | None = None
        wanted = f"--port\0{port}\0".encode()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    cmdline = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                if b"serve" in cmdline and wanted in cmdline + b"\0":
                    self.pid = int(entry.name)

    def seconds(self) -> float | None:
        if self.pid is None:
            return None
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_figures(clock: CpuClock, before: float | None, seconds: float, tasks: int) -> dict[str, Any]:
    after = clock.seconds()
    if before is None or after is None or seconds <= 0:
        return {}
    used = after - before
    return {"gateway_cpu_s": round(used, 2), "gateway_cpu_us_per_task": round(used / tasks * 1e6)}


# --- the runs -----------------------------------------------------------------------------------
def measure_latency(
    gate: httpx.Client, auth: str, recv: httpx.Client, url: str, tasks: int
) -> dict[str, Any]:
    """One task at a time on an idle gateway: submit, await its callback, pause."""
    headers = {"Authorization": auth}
    start = arrivals(recv)
    task_ids = []
    for i in range(tasks):
        task_ids.append(success(gate.post(SUBMIT_PATH, headers=headers, json=submit_body(url, i)))["taskId"])
        deadline = time.monotonic() + ARRIVAL_WAIT_S
        while arrivals(recv) < start + i + 1:
            if time.monotonic() > deadline:
                raise BenchError(f"callback of {task_ids[-1]} not received within {ARRIVAL_WAIT_S}s")
            time.sleep(0.002)
        time.sleep(IDLE_PAUSE_S)
    rows = records(recv, start)
    check_once(rows, task_ids)
    values = latencies_ms(rows)
    return {
        "tasks": tasks,
        **summary(values),
        "bar_p50_ms": BAR_P50_MS,
        "pass": percentile(values, 50) < BAR_P50_MS,
    }


def measure_baseline(
    gate: httpx.Client, auth: str, data_dir: Path, tasks: int, clock: CpuClock
) -> dict[str, Any]:
    """The drain of `tasks` tasks without callbacks: tasks/s from the task table."""
    from bench.drain import finished, wait_drained

    backend = Backend("sqlite")
    conn = backend.connect(data_dir)
    try:
        since = int(time.time() * 1000)
        cpu = clock.seconds()
        _ids, submit_s = submit_all(gate, auth, None, tasks)
        wait_drained(backend, conn, THROUGHPUT_WAIT_S)
        first, last = finished(backend, conn, since, tasks)
    finally:
        conn.close()
    seconds = (last - first) / 1000
    return {
        "tasks": tasks,
        "submit_per_s": round(tasks / submit_s, 1),
        "seconds": round(seconds, 3),
        "tasks_per_s": round(tasks / seconds, 1),
        **cpu_figures(clock, cpu, seconds, tasks),
    }


def measure_throughput(
    gate: httpx.Client, auth: str, recv: httpx.Client, url: str, tasks: int, *, clock: CpuClock
) -> dict[str, Any]:
    """`tasks` callback tasks submitted at once: deliveries per second, first arrival to last."""
    start = arrivals(recv)
    since = time.time_ns()
    cpu = clock.seconds()
    task_ids, submit_s = submit_all(gate, auth, url, tasks)
    deadline = time.monotonic() + THROUGHPUT_WAIT_S
    while arrivals(recv) < start + tasks:
        if time.monotonic() > deadline:
            got = arrivals(recv) - start
            raise BenchError(f"only {got} of {tasks} callbacks received within {THROUGHPUT_WAIT_S:.0f}s")
        time.sleep(POLL_S)
    cpu_used = cpu_figures(clock, cpu, 1.0, tasks)
    time.sleep(0.5)  # a duplicate would arrive now
    rows = records(recv, start)
    check_once(rows, task_ids)
    first, last = rows[0][0], rows[-1][0]
    span_s = (last - first) / 1e9
    completed = sorted(complete for _arrived, complete, _task, _id in rows)
    completion_span_s = (completed[-1] - completed[0]) / 1000
    return {
        "tasks": tasks,
        "submit_s": round(submit_s, 2),
        "submit_per_s": round(tasks / submit_s, 1),
        "delivery_span_s": round(span_s, 2),
        "deliveries_per_s": round((len(rows) - 1) / span_s, 1) if span_s > 0 else None,
        # How fast the tasks themselves ended: deliveries cannot outpace it for long.
        "completions_per_s": round((len(rows) - 1) / completion_span_s, 1) if completion_span_s > 0 else None,
        # First submit to last callback received: the whole job, as a user sees it.
        "end_to_end_per_s": round(tasks / ((last - since) / 1e9), 1),
        "under_load": summary(latencies_ms(rows)),
        **cpu_used,
    }


def webhook_attempts(gate: httpx.Client) -> dict[str, float]:
    text = gate.get("/metrics").text
    found = re.findall(r'^gengate_webhook_attempts_total\{outcome="(\w+)"\} ([\d.e+]+)$', text, re.MULTILINE)
    return {outcome: float(value) for outcome, value in found}


def measure(latency_tasks: int, throughput_tasks: int) -> dict[str, Any]:
    print(
        f"[callbacks] gengate on CPU {SERVER_CPU}, receiver and submitter on CPU {LOAD_CPU} ...", flush=True
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    affinity = os.sched_getaffinity(0)
    if int(LOAD_CPU) in affinity:  # this process submits: keep it off the gateway's CPU
        os.sched_setaffinity(0, {int(LOAD_CPU)})
    try:
        with (
            receiver(RESULTS / "callbacks-receiver.log") as (recv, url),
            serve(TARGET, RESULTS / "callbacks.log", start_timeout_s=60) as (gate, env),
        ):
            auth = TARGET.setup(gate, env).authorization
            port = gate.base_url.port
            assert port is not None
            clock = CpuClock(port)
            measure_latency(gate, auth, recv, url, 10)  # warm-up: connections, caches
            print(f"[callbacks] latency: {latency_tasks} tasks one at a time ...", flush=True)
            latency = measure_latency(gate, auth, recv, url, latency_tasks)
            print(f"[callbacks] baseline: {throughput_tasks} tasks without callbacks ...", flush=True)
            baseline = measure_baseline(gate, auth, Path(env["GENGATE_DATA_DIR"]), throughput_tasks, clock)
            print(f"[callbacks] throughput: {throughput_tasks} tasks with callbacks at once ...", flush=True)
            throughput = measure_throughput(gate, auth, recv, url, throughput_tasks, clock=clock)
            attempts = webhook_attempts(gate)
    finally:
        os.sched_setaffinity(0, affinity)
    total = 10 + latency_tasks + throughput_tasks
    if attempts != {"delivered": float(total)}:
        raise BenchError(f"expected {total} first-time deliveries and nothing else, /metrics says {attempts}")
    ratio = (throughput["deliveries_per_s"] or 0) / baseline["tasks_per_s"]
    return {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "server_cpu": SERVER_CPU,
        "receiver_cpu": LOAD_CPU,
        "latency": latency,
        "baseline": baseline,
        "throughput": throughput,
        "ratio": round(ratio, 3),
        "bar_ratio": BAR_RATIO,
        "ratio_pass": ratio >= BAR_RATIO,
        "attempts": attempts,
    }


def report(result: dict[str, Any]) -> None:
    latency, throughput, baseline = result["latency"], result["throughput"], result["baseline"]
    load = throughput["under_load"]
    at_once = f"{throughput['tasks']} at once"
    print()
    print(f"{'callbacks':<28}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'per s':>10}")
    print(
        f"{'idle, one at a time':<28}{latency['p50_ms']:>9.2f}{latency['p99_ms']:>9.2f}"
        f"{latency['max_ms']:>9.2f}{'':>10}"
    )
    print(
        f"{at_once:<28}{load['p50_ms']:>9.2f}{load['p99_ms']:>9.2f}"
        f"{load['max_ms']:>9.2f}{throughput['deliveries_per_s']:>10,.0f}"
    )
    verdict = "PASS" if latency["pass"] else "BELOW"
    print(
        f"callback latency (completion -> received), idle: p50 {latency['p50_ms']:.2f} ms "
        f"(bar < {BAR_P50_MS:g} ms) {verdict}"
    )
    verdict = "PASS" if result["ratio_pass"] else "BELOW"
    print(
        f"{throughput['deliveries_per_s']:,.0f} deliveries/s (tasks completed at "
        f"{throughput['completions_per_s']:,.0f}/s, first submit to last callback "
        f"{throughput['end_to_end_per_s']:,.0f}/s); the drain without callbacks "
        f"{baseline['tasks_per_s']:,.0f} tasks/s: {result['ratio']:.2f}x (bar >= {BAR_RATIO:g}x) {verdict}"
    )
    if "gateway_cpu_us_per_task" in baseline and "gateway_cpu_us_per_task" in throughput:
        print(
            f"gateway CPU per task: {baseline['gateway_cpu_us_per_task']} us without a callback, "
            f"{throughput['gateway_cpu_us_per_task']} us with one"
        )


def merge_results(result: dict[str, Any]) -> Path:
    """Put `result` under `callbacks` in latest.json, keeping whatever else is there."""
    out = RESULTS / "latest.json"
    try:
        existing = json.loads(out.read_text()) if out.exists() else {}
    except ValueError:
        existing = {}
    if not isinstance(existing, dict):
        existing = {}
    existing["callbacks"] = result
    out.write_text(json.dumps(existing, indent=2) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--latency-tasks", type=int, default=200)
    parser.add_argument("--throughput-tasks", type=int, default=10_000)
    parser.add_argument("--serve-receiver", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_receiver is not None:
        serve_receiver(args.serve_receiver)
        return 0
    if args.latency_tasks < 1 or args.throughput_tasks < 2:
        parser.error("--latency-tasks must be at least 1, --throughput-tasks at least 2")
    try:
        result = measure(args.latency_tasks, args.throughput_tasks)
    except BenchError as exc:
        print(f"callbacks bench failed: {exc}", file=sys.stderr)
        print(f"gengate log (tail):\n{tail(RESULTS / 'callbacks.log')}", file=sys.stderr)
        return 1
    report(result)
    out = merge_results(result)
    print(f"callback figures merged into {out.relative_to(ROOT)} under 'callbacks'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
