"""`make bench`: gengate's status and submit throughput as a ratio to a raw ASGI + SQLite baseline.

Each server runs pinned to CPU 0 (`taskset -c 0`) in a fresh temporary data folder; `wrk` loads it
from CPU 1 over loopback. The raw baseline (`bench/raw_app.py`) and gengate are measured in the same
run, so the ratios hold on a noisy machine better than the absolute figures do.

    python -m bench.run [--seconds 10] [--targets raw,gengate] [--paths status,submit,replicate_status]

Beside the ratios to the baseline, gengate's `replicate_status` (the same finished task read as a
Replicate prediction, `GET /v1/predictions/{id}`) is measured right after its APIXO status, and
its cost reported relative to that (bar: at most 1.2x).

Exit status: 0 when every measurement ran cleanly (a ratio below its bar is reported, not failed);
1 when a server does not start or dies, or wrk fails, errs on sockets or sees non-2xx responses.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
SERVER_CPU, LOAD_CPU = "0", "1"
CONNECTIONS = 64
UVICORN_OPTIONS = ["--loop", "uvloop", "--http", "httptools", "--no-access-log"]
SUBMIT_BODY: dict[str, Any] = {"request_type": "async", "input": {"mode": "echo", "prompt": "bench"}}
#: gengate / raw requests per second at or above which a path passes.
BARS = {"status": 0.5, "submit": 0.4}
#: Paths measured by default; `replicate_status` only where the target has it (gengate).
PATHS = ("status", "replicate_status", "submit")
#: Another door's status read of the same task, as a cost relative to APIXO's `status` (its
#: requests/s over the door's): at most this.
DOOR_COST_BARS = {"replicate_status": 1.2}
#: Longest wait for the task submitted after gengate's submit run (the backlog's drain).
DRAIN_WAIT_S = 60.0
TERMINAL_FAILURES = {"failed", "fail"}


class BenchError(Exception):
    """A run that cannot give a meaningful figure."""


@dataclass
class Workload:
    """What wrk sends to one target: the bearer header, a status URL path and the submit request."""

    authorization: str
    status_path: str
    submit_path: str
    submit_body: bytes = field(default_factory=lambda: json.dumps(SUBMIT_BODY).encode())
    #: Other doors' status reads of the same task, by path name (gengate's Replicate door).
    door_status: dict[str, str] = field(default_factory=dict)


@dataclass
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: dict[str, int]

    def problems(self) -> list[str]:
        found = [f"{count} socket {kind} errors" for kind, count in self.socket_errors.items() if count]
        if self.non_2xx:
            found.append(f"{self.non_2xx} non-2xx responses")
        if self.requests == 0:
            found.append("no requests completed")
        return found


@dataclass
class Target:
    name: str
    #: (port, data folder) -> the server's command line and extra environment.
    command: Callable[[int, Path], tuple[list[str], dict[str, str]]]
    #: Prepares what to send, from a client on the running server and the server's extra env.
    setup: Callable[[httpx.Client, dict[str, str]], Workload]
    #: Extra figures taken after the measured runs, merged into the target's results.
    after: Callable[[httpx.Client, Workload], dict[str, Any]] | None = None


# --- targets -----------------------------------------------------------------------------------


def raw_command(port: int, data: Path) -> tuple[list[str], dict[str, str]]:
    argv = [sys.executable, "-m", "uvicorn", "bench.raw_app:app", "--app-dir", str(ROOT)]
    argv += ["--host", "127.0.0.1", "--port", str(port), *UVICORN_OPTIONS, "--log-level", "warning"]
    return argv, {"BENCH_RAW_DB": str(data / "raw.db")}


def raw_setup(client: httpx.Client, env: dict[str, str]) -> Workload:
    auth = "Bearer bench-raw-key"
    task_id = success(client.post("/submit", headers={"Authorization": auth}, json=SUBMIT_BODY))["taskId"]
    return Workload(auth, f"/status?taskId={task_id}", "/submit")


def gengate_command(port: int, data: Path) -> tuple[list[str], dict[str, str]]:
    env = {
        "GENGATE_DATA_DIR": str(data),
        "GENGATE_ADMIN_KEY": "bench_admin_" + secrets.token_urlsafe(24),
        "GENGATE_LOG_LEVEL": "warning",
        # Submits outrun the workers here on purpose: no queue cap may turn them away.
        "GENGATE_MAX_QUEUE_DEPTH": "100000000",
    }
    return [gengate_executable(), "serve", "--host", "127.0.0.1", "--port", str(port)], env


def gengate_setup(client: httpx.Client, env: dict[str, str]) -> Workload:
    admin = {"Authorization": f"Bearer {env['GENGATE_ADMIN_KEY']}"}
    key = success(client.post("/admin/v1/keys", headers=admin, json={"name": "bench"}))["key"]
    auth = f"Bearer {key}"
    submit_path = "/api/v1/generateTask/demo-echo"
    task_id = success(client.post(submit_path, headers={"Authorization": auth}, json=SUBMIT_BODY))["taskId"]
    status_path = f"/api/v1/statusTask/demo-echo?taskId={task_id}"
    if wait_finished(client, status_path, auth, timeout_s=30) is None:
        raise BenchError(f"the first demo-echo task did not finish within 30s ({status_path})")
    prediction = f"/v1/predictions/{task_id}"
    if client.get(prediction, headers={"Authorization": auth}).json().get("status") != "succeeded":
        raise BenchError(f"{prediction} does not read as a succeeded prediction")
    return Workload(auth, status_path, submit_path, door_status={"replicate_status": prediction})


def gengate_drain(client: httpx.Client, workload: Workload) -> dict[str, Any]:
    """How far behind the in-process workers are left: a task submitted now, timed to success
    (None: not within DRAIN_WAIT_S)."""
    headers = {"Authorization": workload.authorization}
    task_id = success(client.post(workload.submit_path, headers=headers, json=SUBMIT_BODY))["taskId"]
    probe = f"/api/v1/statusTask/demo-echo?taskId={task_id}"
    took = wait_finished(client, probe, workload.authorization, timeout_s=DRAIN_WAIT_S)
    return {"drain_s": None if took is None else round(took, 2)}


def gengate_executable() -> str:
    for candidate in (ROOT / ".venv/bin/gengate", Path(sys.executable).parent / "gengate"):
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("gengate")
    if found is None:
        raise BenchError("no `gengate` executable: run `pip install -e .` in the venv first")
    return found


TARGETS = {
    "raw": Target("raw", raw_command, raw_setup),
    "gengate": Target("gengate", gengate_command, gengate_setup, gengate_drain),
}


def success(response: httpx.Response) -> dict[str, Any]:
    """The `data` of a `{code: 200, message, data}` answer, else a BenchError naming the request."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict) or body.get("code") != 200:
        request = response.request
        raise BenchError(
            f"{request.method} {request.url.path} -> {response.status_code}: {response.text[:300]}"
        )
    data: dict[str, Any] = body["data"]
    return data


def wait_finished(client: httpx.Client, status_path: str, auth: str, timeout_s: float) -> float | None:
    """Poll a task until its state is `success`: the seconds it took, None if it took too long."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        state = success(client.get(status_path, headers={"Authorization": auth})).get("state")
        if state == "success":
            return time.monotonic() - start
        if state in TERMINAL_FAILURES:
            raise BenchError(f"task {status_path} ended in state {state!r}")
        time.sleep(0.05)
    return None


# --- servers -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tail(path: Path, lines: int = 40) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


def start_pinned(
    argv: list[str], cpu: str, cwd: str, extra_env: dict[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    """`argv` pinned to `cpu`, with our `GENGATE_*` variables only and its output in `log_path`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENGATE_")} | extra_env
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        return subprocess.Popen(
            ["taskset", "-c", cpu, *argv], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT
        )


def write_results(name: str, result: dict[str, Any], load_before: float) -> None:
    """`bench/results/<name>.json`: the result with when and where it was measured."""
    out = RESULTS / f"{name}.json"
    summary = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "server_cpu": SERVER_CPU,
        "load_cpu": LOAD_CPU,
        "load_average_before": load_before,
    }
    out.write_text(json.dumps(summary | result, indent=2) + "\n")
    print(f"results written to {out.relative_to(ROOT)}")


@contextmanager
def serve(
    target: Target, log_path: Path, start_timeout_s: float, stop_timeout_s: float = 15
) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    """Start the target pinned to SERVER_CPU in a fresh data folder; yield a client and its env."""
    with tempfile.TemporaryDirectory(prefix=f"gengate-bench-{target.name}-") as tmp:
        port = free_port()
        argv, extra_env = target.command(port, Path(tmp))
        proc = start_pinned(argv, SERVER_CPU, tmp, extra_env, log_path)
        base_url = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=base_url, timeout=10, trust_env=False) as client:
                wait_ready(client, proc, target.name, log_path, start_timeout_s)
                yield client, extra_env
                if proc.poll() is not None:
                    raise BenchError(f"{target.name} exited during the run:\n{tail(log_path)}")
        finally:
            stop(proc, stop_timeout_s)


def wait_ready(
    client: httpx.Client, proc: subprocess.Popen[bytes], name: str, log_path: Path, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(
                f"{name} exited with {proc.returncode} before ready; {log_path}:\n{tail(log_path)}"
            )
        try:
            if client.get("/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise BenchError(f"{name} not ready after {timeout_s:.0f}s; {log_path}:\n{tail(log_path)}")


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 15) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- wrk ---------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise BenchError("`wrk` is not installed: install it (e.g. `sudo apt-get install -y wrk`) and rerun")
    print("installing wrk with apt-get ...", flush=True)
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(install, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=False)
        done = subprocess.run(install, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BenchError(f"`apt-get install wrk` failed:\n{done.stderr[-2000:]}")
    found = shutil.which("wrk")
    if not found:
        raise BenchError("`wrk` still not on PATH after installing it")
    return found


def post_script(workload: Workload, folder: Path) -> Path:
    """A wrk Lua script sending the submit request; long brackets keep the body verbatim."""
    body = workload.submit_body.decode()
    if "]==]" in body or "]==]" in workload.authorization:
        raise BenchError("submit body cannot be quoted for Lua")
    script = folder / "submit.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = [==[{body}]==]\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = [==[{workload.authorization}]==]\n'
    )
    return script


def run_wrk(wrk: str, url: str, seconds: int, extra: list[str]) -> WrkResult:
    argv = ["taskset", "-c", LOAD_CPU, wrk, "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s"]
    argv += ["--latency", "--timeout", "10s", *extra, url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}) on {url}:\n{done.stdout}{done.stderr}")
    return parse_wrk(done.stdout)


UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def parse_wrk(output: str) -> WrkResult:
    def number(pattern: str) -> re.Match[str]:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            raise BenchError(f"cannot find {pattern!r} in wrk output:\n{output}")
        return match

    def percentile(p: int) -> float:
        match = number(rf"^\s*{p}%\s+([\d.]+)(us|ms|s|m|h)\s*$")
        return float(match[1]) * UNIT_MS[match[2]]

    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    kinds = ("connect", "read", "write", "timeout")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        requests_per_s=float(number(r"^Requests/sec:\s+([\d.]+)")[1]),
        p50_ms=percentile(50),
        p99_ms=percentile(99),
        requests=int(number(r"(\d+) requests in")[1]),
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors={k: int(errors[i + 1]) if errors else 0 for i, k in enumerate(kinds)},
    )


# --- the run -----------------------------------------------------------------------------------


def measure(
    target: Target, wrk: str, seconds: int, warmup: int, paths: tuple[str, ...] = PATHS
) -> dict[str, Any]:
    print(f"[{target.name}] starting on CPU {SERVER_CPU} ...", flush=True)
    with serve(target, RESULTS / f"{target.name}.log", start_timeout_s=60) as (client, env):
        workload = target.setup(client, env)
        base = str(client.base_url).rstrip("/")
        read_args = ["-H", f"Authorization: {workload.authorization}"]
        # Status reads first, so that no backlog of submitted tasks is being drained meanwhile.
        urls = {"status": workload.status_path} | workload.door_status
        result: dict[str, Any] = {}
        for path, url in urls.items():
            if path in paths:
                measured = warm_and_run(
                    target.name, path, base + url, read_args, wrk=wrk, seconds=seconds, warmup=warmup
                )
                result[path] = asdict(measured)
        if "submit" in paths:
            with tempfile.TemporaryDirectory(prefix="gengate-bench-wrk-") as tmp:
                submit_args = ["-s", str(post_script(workload, Path(tmp)))]
                submit = warm_and_run(
                    target.name,
                    "submit",
                    base + workload.submit_path,
                    submit_args,
                    wrk=wrk,
                    seconds=seconds,
                    warmup=warmup,
                )
            result["submit"] = asdict(submit)
            if target.after is not None:
                result |= target.after(client, workload)
    return result


def warm_and_run(
    name: str, path: str, url: str, extra: list[str], *, wrk: str, seconds: int, warmup: int
) -> WrkResult:
    if warmup > 0:
        run_wrk(wrk, url, warmup, extra)
    print(f"[{name}] {path} for {seconds}s ...", flush=True)
    return run_wrk(wrk, url, seconds, extra)


def median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per path, the round with the median requests/s (its latencies with it)."""
    summary = dict(rounds[len(rounds) // 2])
    for path in (path for path in PATHS if path in summary):
        ordered = sorted(rounds, key=lambda r: float(r[path]["requests_per_s"]))
        summary[path] = ordered[len(ordered) // 2][path]
    return summary


def ratios(rounds: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per path, gengate/raw within each round (minutes apart at most), and their median."""
    if "raw" not in rounds or "gengate" not in rounds:
        return {}
    found = {}
    for path, bar in BARS.items():
        if path not in rounds["raw"][0] or path not in rounds["gengate"][0]:
            continue
        each = [
            g[path]["requests_per_s"] / r[path]["requests_per_s"]
            for r, g in zip(rounds["raw"], rounds["gengate"], strict=True)
        ]
        value = statistics.median(each)
        found[path] = {
            "ratio": round(value, 3),
            "bar": bar,
            "pass": value >= bar,
            "rounds": [round(x, 3) for x in each],
        }
    return found


def door_costs(rounds: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per other door's status read, its cost relative to APIXO's status within each round
    (APIXO requests/s over the door's: 1.1 is 10% dearer), and their median."""
    found = {}
    for path, bar in DOOR_COST_BARS.items():
        each = [
            r["status"]["requests_per_s"] / r[path]["requests_per_s"]
            for r in rounds
            if path in r and "status" in r
        ]
        if each:
            value = statistics.median(each)
            found[path] = {
                "cost": round(value, 3),
                "bar": bar,
                "pass": value <= bar,
                "rounds": [round(x, 3) for x in each],
            }
    return found


def report(
    results: dict[str, dict[str, Any]], found: dict[str, dict[str, Any]], costs: dict[str, dict[str, Any]]
) -> None:
    print()
    for name, result in results.items():
        for path in (path for path in PATHS if path in result):
            r = result[path]
            print(
                f"{name:<9}{path:<18}{r['requests_per_s']:>10,.0f} req/s"
                f"   p50/p99 {r['p50_ms']:.2f}/{r['p99_ms']:.2f} ms"
            )
    for path, r in found.items():
        verdict = "PASS" if r["pass"] else "BELOW"
        print(f"{path} ratio gengate/raw: {r['ratio']:.2f}x (bar >= {r['bar']}x) {verdict}")
    for path, r in costs.items():
        verdict = "PASS" if r["pass"] else "ABOVE"
        print(f"{path} cost relative to gengate's status: {r['cost']:.2f}x (bar <= {r['bar']}x) {verdict}")
    if "drain_s" in results.get("gengate", {}):
        drain = results["gengate"]["drain_s"]
        took = f"{drain}s later" if drain is not None else f"not within {DRAIN_WAIT_S:.0f}s"
        print(f"gengate workers' backlog: a task submitted after the submit run finished {took}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    # wrk takes whole seconds.
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("BENCH_SECONDS", "10")))
    parser.add_argument("--warmup", type=int, default=2, help="seconds of wrk per path before measuring")
    parser.add_argument("--rounds", type=int, default=1, help="runs per target; the median is reported")
    parser.add_argument("--targets", default="raw,gengate", help="comma-separated: raw, gengate")
    parser.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated: {', '.join(PATHS)}")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.seconds < 1 or args.warmup < 0:
        parser.error("--rounds and --seconds must be at least 1, --warmup at least 0")
    names = [name.strip() for name in args.targets.split(",") if name.strip()]
    if unknown := [name for name in names if name not in TARGETS]:
        parser.error(f"unknown targets {unknown}; choose from {sorted(TARGETS)}")
    paths = tuple(path.strip() for path in args.paths.split(",") if path.strip())
    if unknown := [path for path in paths if path not in PATHS]:
        parser.error(f"unknown paths {unknown}; choose from {list(PATHS)}")
    if (os.cpu_count() or 1) < 2:
        print("warning: fewer than 2 CPUs; server and load generator share one", file=sys.stderr)

    try:
        wrk = ensure_wrk()
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for _ in range(args.rounds):  # alternate targets so slow spells of the machine hit both
            for name in names:
                rounds[name].append(measure(TARGETS[name], wrk, args.seconds, args.warmup, paths))
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    results = {name: median_round(runs) for name, runs in rounds.items()}
    found = ratios(rounds)
    costs = door_costs(rounds.get("gengate", []))
    report(results, found, costs)

    RESULTS.mkdir(parents=True, exist_ok=True)
    summary = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": args.seconds,
        "connections": CONNECTIONS,
        "server_cpu": SERVER_CPU,
        "load_cpu": LOAD_CPU,
        "rounds": args.rounds,
        "targets": results,
        "ratios": found,
        "door_costs": costs,
        "all_rounds": rounds,
    }
    out = RESULTS / "latest.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"results written to {out.relative_to(ROOT)}")

    problems = [
        f"{name} {path}: {', '.join(issues)}"
        for name, runs in rounds.items()
        for result in runs
        for path in PATHS
        if path in result and (issues := WrkResult(**result[path]).problems())
    ]
    if problems:
        print("bench failed: the load saw errors, so the figures are not meaningful:", file=sys.stderr)
        print("\n".join(f"  {p}" for p in problems), file=sys.stderr)
        return 1

    # --- callbacks (bench/callbacks.py): delivery latency and rate, printed after the figures ---
    # above and merged into latest.json under "callbacks"; alone: `python -m bench.callbacks`.
    if "gengate" in names and "submit" in paths:
        from bench import callbacks

        return callbacks.main([])
    return 0


if __name__ == "__main__":
    sys.exit(main())
