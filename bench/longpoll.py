"""Long-poll at scale: 10,000 clients waiting on one task's `statusTask?wait=60`.

Measures, with the gateway pinned to one core and the clients on the other:
- the gateway's CPU use while every waiter holds its request and nothing changes
  (waiting should cost nothing, no polling);
- the time from a state change (a cancel, sent as one raw request on a connection opened
  beforehand) to all waiters answered;
- the same for the floor (:mod:`bench.longpoll_floor`, a bare protocol that writes ready
  answers), measured in the same run: gengate's time is also given as a ratio to it.

    .venv/bin/python -m bench.longpoll [--waiters 10000] [--idle-seconds 5] [--profile FILE]

With `--profile`, py-spy samples the gateway from just before the change until all are
answered (a raw collapsed-stack file; idle time is not sampled).
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
from typing import Any, cast

import httpx
import uvloop

from bench.run import LOAD_CPU, RESULTS, SERVER_CPU, free_port, gengate_executable, stop, wait_ready

#: Connections opened at once: under the server's listen backlog.
CONNECT_BATCH = 500
#: The bar we hold ourselves to: idle waiters cost (almost) nothing.
IDLE_CPU_BAR = 0.05
#: Seconds py-spy samples from just before the change: longer than the fan-out.
PROFILE_S = 4


def cpu_seconds(pid: int) -> float:
    return sum(cpu_times(pid))


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


class Waiter(asyncio.Protocol):
    """One long-poll client: sends its request, notes when the whole answer is in. A bare
    protocol on uvloop, so that the clients' core keeps up with the gateway's answers."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.answered: asyncio.Future[tuple[float, int]] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self._buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        if self.request:
            self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        head, found, body = self._buffer.partition(b"\r\n\r\n")
        if not found or self.answered.done():
            return
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        if len(body) >= length:
            self.answered.set_result((time.perf_counter(), int(head.split(b" ", 2)[1])))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answered.done():
            self.answered.set_exception(exc or ConnectionError("closed before the answer"))


def start_profiler(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy on the gateway for the fan-out; returns once it samples. It may run on any core:
    on the clients' alone it would get no time while they read the answers."""
    spy = Path(sys.executable).parent / "py-spy"
    argv = [str(spy), "record", "--pid", str(pid), "--duration", str(PROFILE_S), "--rate", "200"]
    proc = subprocess.Popen(
        ["taskset", "-c", f"{SERVER_CPU},{LOAD_CPU}", *argv, "-f", "raw", "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    proc.stdout.readline()  # "Sampling process ..." once attached
    return proc


async def run(
    port: int, auth: str, task_id: str, *, waiters: int, idle_s: float, pid: int, profile: Path | None
) -> dict[str, Any]:
    request = (
        f"GET /api/v1/statusTask/demo-echo?taskId={task_id}&wait=60 HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nAuthorization: {auth}\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    clients: list[Waiter] = []
    opened = time.perf_counter()
    for start in range(0, waiters, CONNECT_BATCH):
        batch = min(CONNECT_BATCH, waiters - start)
        made = await asyncio.gather(
            *(loop.create_connection(lambda: Waiter(request), "127.0.0.1", port) for _ in range(batch))
        )
        clients += [protocol for _transport, protocol in made]
    open_s = time.perf_counter() - opened
    await asyncio.sleep(1.0)  # let the gateway read every request and park its waiter
    early = sum(waiter.answered.done() for waiter in clients)

    before, wall = cpu_seconds(pid), time.perf_counter()
    await asyncio.sleep(idle_s)
    idle_cpu = (cpu_seconds(pid) - before) / (time.perf_counter() - wall)

    spy = start_profiler(pid, profile) if profile is not None else None
    # Set up before the change, so that the clients' core is idle when the answers come.
    answers = asyncio.gather(*(waiter.answered for waiter in clients))
    # The change: a cancel on a connection opened beforehand, written as one raw request, so
    # that "change" is when its bytes leave (an HTTP client's own setup is not the gateway's).
    cancel = (
        f"POST /api/v1/cancelTask/demo-echo?taskId={task_id} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nAuthorization: {auth}\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    _transport, canceller = await loop.create_connection(lambda: Waiter(b""), "127.0.0.1", port)
    await asyncio.sleep(0.1)
    changed, cpu_at_change = time.perf_counter(), cpu_times(pid)
    assert canceller.transport is not None
    canceller.transport.write(cancel)
    cancel_answered, cancel_status = await asyncio.wait_for(canceller.answered, 30)
    if cancel_status != 200:
        raise RuntimeError(f"the cancel was answered {cancel_status}")
    results = await asyncio.wait_for(answers, 120)
    fanout_user, fanout_sys = (
        after - before for after, before in zip(cpu_times(pid), cpu_at_change, strict=True)
    )
    for waiter in [*clients, canceller]:  # only now: the gateway's work on closes is not part of the fan-out
        if waiter.transport is not None:
            waiter.transport.close()
    delays = sorted((answered - changed) * 1000 for answered, _ in results)
    statuses = {status for _, status in results}
    if spy is not None:
        spy.communicate()
    return {
        "waiters": waiters,
        "connect_s": round(open_s, 2),
        "answered_before_change": early,
        "idle_cpu_fraction": round(idle_cpu, 4),
        "idle_cpu_pass": idle_cpu <= IDLE_CPU_BAR,
        "change_to_cancel_answered_ms": round((cancel_answered - changed) * 1000, 1),
        "change_to_first_ms": round(delays[0], 1),
        "change_to_p50_ms": round(statistics.median(delays), 1),
        "change_to_all_ms": round(delays[-1], 1),
        # The fan-out alone, without the cancel's own request and commit before it.
        "first_to_all_ms": round(delays[-1] - delays[0], 1),
        "gateway_user_cpu_fanout_ms": round(fanout_user * 1000),
        "gateway_sys_cpu_fanout_ms": round(fanout_sys * 1000),
        "statuses": sorted(statuses),
    }


def measure_floor(waiters: int) -> dict[str, Any]:
    """The same clients against :mod:`bench.longpoll_floor` (no idle wait to speak of)."""
    port = free_port()
    proc = subprocess.Popen(
        ["taskset", "-c", SERVER_CPU, sys.executable, "-m", "bench.longpoll_floor", str(port)],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # "ready"
        return uvloop.run(
            run(port, "Bearer floor", "task_floor", waiters=waiters, idle_s=0.5, pid=proc.pid, profile=None)
        )
    finally:
        stop(proc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--waiters", type=int, default=10_000)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--profile", type=Path, help="write a py-spy raw profile of the fan-out here")
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
            result = uvloop.run(
                run(
                    port,
                    auth,
                    task_id,
                    waiters=args.waiters,
                    idle_s=args.idle_seconds,
                    pid=proc.pid,
                    profile=args.profile,
                )
            )
        finally:
            stop(proc)
    floor = result["floor"] = measure_floor(args.waiters)
    result["all_answered_vs_floor"] = round(result["change_to_all_ms"] / floor["change_to_all_ms"], 2)

    print(
        f"long-poll: {result['waiters']:,} waiters on one task, gateway on one core\n"
        f"  idle CPU while they wait: {result['idle_cpu_fraction'] * 100:.1f}% of a core "
        f"({'PASS' if result['idle_cpu_pass'] else 'ABOVE'} <= {IDLE_CPU_BAR * 100:.0f}%)\n"
        f"  change -> answered: first {result['change_to_first_ms']} ms, "
        f"median {result['change_to_p50_ms']} ms, all {result['change_to_all_ms']} ms "
        f"(first to all {result['first_to_all_ms']} ms)\n"
        f"  gateway CPU from change to all answered: {result['gateway_user_cpu_fanout_ms']} ms user, "
        f"{result['gateway_sys_cpu_fanout_ms']} ms system\n"
        f"  floor (bench.longpoll_floor, same run): all answered {floor['change_to_all_ms']} ms, "
        f"CPU {floor['gateway_user_cpu_fanout_ms']} ms user, {floor['gateway_sys_cpu_fanout_ms']} ms system; "
        f"gengate takes {result['all_answered_vs_floor']}x as long"
    )
    (RESULTS / "longpoll.json").write_text(json.dumps(result, indent=2) + "\n")
    if result["answered_before_change"] or result["statuses"] != [200] or floor["statuses"] != [200]:
        print(f"bench failed: early answers or errors: {result}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
