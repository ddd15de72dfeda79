"""Long-poll at scale: 10,000 clients waiting on one task's `statusTask?wait=60`.

Measures, with the gateway pinned to one core and the clients on the other:
- the gateway's CPU use while every waiter holds its request and nothing changes
  (waiting should cost a future per request, no polling);
- the time from a state change (a cancel) to all waiters answered.

    .venv/bin/python -m bench.longpoll [--waiters 10000] [--idle-seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.run import LOAD_CPU, RESULTS, SERVER_CPU, free_port, gengate_executable, stop, wait_ready

#: Connections opened at once: under the server's listen backlog.
CONNECT_BATCH = 500
#: The bar we hold ourselves to: idle waiters cost (almost) nothing.
IDLE_CPU_BAR = 0.05


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def open_waiter(port: int, request: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    return reader, writer


async def read_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[float, int]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    answered = time.perf_counter()
    writer.close()
    return answered, status


async def run(port: int, auth: str, task_id: str, *, waiters: int, idle_s: float, pid: int) -> dict[str, Any]:
    request = (
        f"GET /api/v1/statusTask/demo-echo?taskId={task_id}&wait=60 HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nAuthorization: {auth}\r\n\r\n"
    ).encode()
    connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    opened = time.perf_counter()
    for start in range(0, waiters, CONNECT_BATCH):
        batch = min(CONNECT_BATCH, waiters - start)
        connections += await asyncio.gather(*(open_waiter(port, request) for _ in range(batch)))
    open_s = time.perf_counter() - opened
    answers = [asyncio.create_task(read_answer(r, w)) for r, w in connections]
    await asyncio.sleep(1.0)  # let the gateway read every request and park its waiter
    early = sum(task.done() for task in answers)

    before, wall = cpu_seconds(pid), time.perf_counter()
    await asyncio.sleep(idle_s)
    idle_cpu = (cpu_seconds(pid) - before) / (time.perf_counter() - wall)

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", trust_env=False) as client:
        changed = time.perf_counter()
        response = await client.post(
            "/api/v1/cancelTask/demo-echo", params={"taskId": task_id}, headers={"Authorization": auth}
        )
        response.raise_for_status()
    results = await asyncio.gather(*answers)
    delays = sorted((answered - changed) * 1000 for answered, _ in results)
    statuses = {status for _, status in results}
    return {
        "waiters": waiters,
        "connect_s": round(open_s, 2),
        "answered_before_change": early,
        "idle_cpu_fraction": round(idle_cpu, 4),
        "idle_cpu_pass": idle_cpu <= IDLE_CPU_BAR,
        "change_to_first_ms": round(delays[0], 1),
        "change_to_p50_ms": round(statistics.median(delays), 1),
        "change_to_all_ms": round(delays[-1], 1),
        "statuses": sorted(statuses),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--waiters", type=int, default=10_000)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    args = parser.parse_args(argv)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, max(soft, args.waiters + 1000))
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))  # the server inherits it
    if wanted < args.waiters + 100:
        print(f"bench failed: at most {wanted} open files allowed", file=sys.stderr)
        return 1
    os.sched_setaffinity(0, {int(LOAD_CPU)})

    admin = "bench_admin_" + secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="gengate-bench-longpoll-") as tmp:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GENGATE_")} | {
            "GENGATE_DATA_DIR": str(Path(tmp) / "data"),
            "GENGATE_ADMIN_KEY": admin,
            "GENGATE_LOG_LEVEL": "warning",
            "GENGATE_WORKERS": "0",  # the task stays pending until the cancel changes it
        }
        log_path = RESULTS / "longpoll.log"
        RESULTS.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [
                    "taskset",
                    "-c",
                    SERVER_CPU,
                    gengate_executable(),
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                cwd=tmp,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, trust_env=False) as client:
                wait_ready(client, proc, "gengate", log_path, 30)
                key = client.post(
                    "/admin/v1/keys", headers={"Authorization": f"Bearer {admin}"}, json={"name": "bench"}
                ).json()["data"]["key"]
                auth = f"Bearer {key}"
                body = {"request_type": "async", "input": {"mode": "echo"}}
                task_id = client.post(
                    "/api/v1/generateTask/demo-echo", headers={"Authorization": auth}, json=body
                ).json()["data"]["taskId"]
            result = asyncio.run(
                run(port, auth, task_id, waiters=args.waiters, idle_s=args.idle_seconds, pid=proc.pid)
            )
        finally:
            stop(proc)

    print(
        f"long-poll: {result['waiters']:,} waiters on one task, gateway on one core\n"
        f"  idle CPU while they wait: {result['idle_cpu_fraction'] * 100:.1f}% of a core "
        f"({'PASS' if result['idle_cpu_pass'] else 'ABOVE'} <= {IDLE_CPU_BAR * 100:.0f}%)\n"
        f"  change -> answered: first {result['change_to_first_ms']} ms, "
        f"median {result['change_to_p50_ms']} ms, all {result['change_to_all_ms']} ms"
    )
    (RESULTS / "longpoll.json").write_text(json.dumps(result, indent=2) + "\n")
    if result["answered_before_change"] or result["statuses"] != [200]:
        print(f"bench failed: early answers or errors: {result}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
