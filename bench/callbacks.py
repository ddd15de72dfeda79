"""Callback delivery: time from a task's completion to its callback at a loopback receiver.

gengate runs pinned to CPU 0 (`taskset -c 0`) in a fresh temporary data folder with
`GENGATE_WEBHOOK_ALLOW=127.0.0.0/8`; the receiver, a raw ASGI app under uvicorn (uvloop, httptools),
runs pinned to CPU 1, as does this process, which submits the tasks. The receiver stamps each
callback with `time.time_ns()` on arrival and keeps the body's `data.completeTime`: both are wall
clock on the same machine, so latency = arrival - completeTime (ms; completeTime is whole ms).

1. latency: `--latency-tasks` (200) demo-echo callback tasks, one at a time (each callback awaited,
   then a short pause), so the gateway is idle: p50 and p99. Bar: p50 under 20 ms.
2. throughput: `--throughput-tasks` (2000) callback tasks submitted as fast as 32 connections go;
   deliveries per second from the first arrival to the last (and latency under that load).

    python -m bench.callbacks [--latency-tasks 200] [--throughput-tasks 2000]

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
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

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

BAR_P50_MS = 20.0
SUBMIT_PATH = "/api/v1/generateTask/demo-echo"
SUBMIT_CONNECTIONS = 32
#: Pause after each awaited callback of the latency run: the gateway is idle when the next comes.
IDLE_PAUSE_S = 0.02
ARRIVAL_WAIT_S = 5.0
THROUGHPUT_WAIT_S = 180.0

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


# --- the receiver (its own process, on LOAD_CPU) ---------------------------------------------------
class Recorder:
    """A raw ASGI app: `POST` records (arrival ns, completeTime, taskId, webhook-id) and answers 204;
    `GET /count` answers how many arrived, `GET /records?since=N` the records from the N-th on."""

    def __init__(self) -> None:
        self.records: list[tuple[int, int | None, str | None, str | None]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        arrived = time.time_ns()  # the whole request is in: the callback is received
        if scope["method"] == "POST":
            await self._record(arrived, b"".join(chunks), scope)
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        if scope["path"] == "/count":
            body = str(len(self.records)).encode()
        else:
            since = int(dict(re.findall(r"(\w+)=(\d+)", scope["query_string"].decode())).get("since", 0))
            body = orjson.dumps(self.records[since:])
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text")]})
        await send({"type": "http.response.body", "body": body})

    async def _record(self, arrived: int, body: bytes, scope: Scope) -> None:
        data = orjson.loads(body).get("data") or {}
        webhook_id = next((v.decode() for k, v in scope["headers"] if k == b"webhook-id"), None)
        self.records.append((arrived, data.get("completeTime"), data.get("taskId"), webhook_id))


def serve_receiver(port: int) -> None:
    import uvicorn

    uvicorn.run(
        Recorder(),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


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


def submit_body(url: str, i: int) -> dict[str, Any]:
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


# --- the two runs -----------------------------------------------------------------------------
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


async def submit_all(base_url: str, auth: str, url: str, tasks: int) -> list[str]:
    """Submit `tasks` callback tasks over SUBMIT_CONNECTIONS kept-alive connections.

    A few lines of raw HTTP/1.1 rather than httpx: httpx's async pool slows down as connections
    are added (77 submits/s with 32 against 205 with 1 here), and would measure itself.
    """
    parts = httpx.URL(base_url)
    host, port = parts.host, parts.port or 80
    numbers = iter(range(tasks))
    task_ids: list[str] = []
    head = (
        f"POST {SUBMIT_PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: {auth}\r\n"
        "Content-Type: application/json\r\nContent-Length: "
    ).encode()

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for i in numbers:
                body = orjson.dumps(submit_body(url, i))
                writer.write(head + b"%d\r\n\r\n" % len(body) + body)
                answer = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?im)^content-length: *(\d+)", answer)
                if length is None:
                    raise BenchError(f"submit answered without a Content-Length: {answer[:300]!r}")
                payload = await reader.readexactly(int(length[1]))
                if not answer.startswith(b"HTTP/1.1 200 "):
                    raise BenchError(f"submit answered {answer.splitlines()[0]!r}: {payload[:300]!r}")
                task_ids.append(orjson.loads(payload)["data"]["taskId"])
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(SUBMIT_CONNECTIONS)))
    return task_ids


def measure_throughput(
    gate: httpx.Client, auth: str, recv: httpx.Client, url: str, tasks: int
) -> dict[str, Any]:
    """`tasks` submitted at once (32 connections): deliveries per second, first arrival to last."""
    start = arrivals(recv)
    began = time.monotonic()
    task_ids = asyncio.run(submit_all(str(gate.base_url), auth, url, tasks))
    submit_s = time.monotonic() - began
    deadline = time.monotonic() + THROUGHPUT_WAIT_S
    while arrivals(recv) < start + tasks:
        if time.monotonic() > deadline:
            got = arrivals(recv) - start
            raise BenchError(f"only {got} of {tasks} callbacks received within {THROUGHPUT_WAIT_S:.0f}s")
        time.sleep(0.05)
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
        "under_load": summary(latencies_ms(rows)),
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
            measure_latency(gate, auth, recv, url, 10)  # warm-up: connections, caches
            print(f"[callbacks] latency: {latency_tasks} tasks one at a time ...", flush=True)
            latency = measure_latency(gate, auth, recv, url, latency_tasks)
            print(f"[callbacks] throughput: {throughput_tasks} tasks at once ...", flush=True)
            throughput = measure_throughput(gate, auth, recv, url, throughput_tasks)
            attempts = webhook_attempts(gate)
    finally:
        os.sched_setaffinity(0, affinity)
    total = 10 + latency_tasks + throughput_tasks
    if attempts != {"delivered": float(total)}:
        raise BenchError(f"expected {total} first-time deliveries and nothing else, /metrics says {attempts}")
    return {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "server_cpu": SERVER_CPU,
        "receiver_cpu": LOAD_CPU,
        "latency": latency,
        "throughput": throughput,
        "attempts": attempts,
    }


def report(result: dict[str, Any]) -> None:
    latency, throughput = result["latency"], result["throughput"]
    load = throughput["under_load"]
    verdict = "PASS" if latency["pass"] else "BELOW"
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
    print(
        f"callback latency (completion -> received) p50 {latency['p50_ms']:.2f} ms "
        f"(bar < {BAR_P50_MS:g} ms) {verdict}; "
        f"{throughput['deliveries_per_s']:,.0f} deliveries/s "
        f"({throughput['tasks']} submitted in {throughput['submit_s']}s, "
        f"tasks completed at {throughput['completions_per_s']:,.0f}/s)"
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
    parser.add_argument("--throughput-tasks", type=int, default=2000)
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
