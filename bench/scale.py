"""`make bench`: a status read with 1,000,000 tasks stored against the same read with 1,000.

Two `gengate serve` processes (pinned to CPU 0; SQLite, or PostgreSQL with `--pg` / `--pg-url`),
each on a database of its own, finish one real `demo-echo` task each; copies of that row, each
under a fresh random id like a real task's, are bulk-inserted with SQL behind the server's back
until one table holds `--small` rows and the other `--rows`. Then, in alternating rounds, `wrk`
(CPU 1, 64 connections) reads `statusTask` from each for `--seconds`, cycling over `--ids` ids
(default 1,000) sampled at random from its table: the same number of tasks polled at both sizes,
spread over the whole index at the large one.

    python -m bench.scale [--rows 1000000] [--small 1000] [--ids 1000] [--seconds 10] [--rounds 3]
    python -m bench.scale --pg               # or --pg-url postgresql://... (may create databases)

The bar: req/s with `--rows` stored at least 0.9x req/s with `--small` (the same, within noise),
as the median of the rounds' ratios.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.backend import Backend, Connection, open_backend
from bench.run import (
    RESULTS,
    SERVER_CPU,
    BenchError,
    Target,
    WrkResult,
    ensure_wrk,
    gengate_command,
    gengate_setup,
    run_wrk,
    serve,
    success,
    write_results,
)

#: req/s with many rows stored over req/s with few, at or above which the read "stays as fast".
RATIO_BAR = 0.9
INSERT_CHUNK = 100_000


def columns(backend: Backend, conn: Connection) -> list[str]:
    if backend.url is None:
        return [str(row[1]) for row in backend.rows(conn, "PRAGMA table_info(tasks)")]
    sql = (
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_name = 'tasks' AND table_schema = current_schema() ORDER BY ordinal_position"
    )
    return [str(row[0]) for row in backend.rows(conn, sql)]


def copy_sql(backend: Backend, names: list[str], template: str, count: int) -> str:
    """SQL inserting `count` copies of the template row, each with a random id (`task_` + 32 hex
    characters): the primary key index fills as it does with real, random ids."""
    others = [name for name in names if name != "id"]
    target = ", ".join(["id", *others])
    copied = ", ".join(f"t.{name}" for name in others)
    if backend.url is None:
        return (
            f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count:d}) "
            f"INSERT INTO tasks ({target}) SELECT 'task_' || lower(hex(randomblob(16))), {copied} "
            f"FROM n, tasks AS t WHERE t.id = '{template}'"
        )
    return (
        f"INSERT INTO tasks ({target}) SELECT 'task_' || md5(random()::text || n::text), {copied} "
        f"FROM generate_series(1, {count:d}) AS n, tasks AS t WHERE t.id = '{template}'"
    )


def fill(backend: Backend, conn: Connection, template: str, total: int) -> float:
    """Insert copies until the table holds `total` rows; the seconds it took."""
    started = time.perf_counter()
    names = columns(backend, conn)
    while (have := int(backend.scalar(conn, "SELECT count(*) FROM tasks"))) < total:
        count = min(INSERT_CHUNK, total - have)
        conn.cursor().execute(copy_sql(backend, names, template, count))
        conn.commit()
        print(f"  {have + count:,} rows stored", flush=True)
    if backend.url is not None:
        conn.cursor().execute("VACUUM ANALYZE tasks")  # what autovacuum would do soon after a load
    return time.perf_counter() - started


def status_script(folder: Path, ids: list[str], authorization: str) -> Path:
    """A wrk Lua script that reads the status of each id in turn."""
    if any(not re.fullmatch(r"[A-Za-z0-9_-]+", task_id) for task_id in ids) or "]==]" in authorization:
        raise BenchError("task ids or the key cannot be quoted for Lua")
    listed = ",\n".join(f'  "{task_id}"' for task_id in ids)
    script = folder / f"status-{secrets.token_hex(4)}.lua"
    script.write_text(
        f"local ids = {{\n{listed}\n}}\n"
        "local n, i = #ids, 0\n"
        f'local headers = {{ ["Authorization"] = [==[{authorization}]==] }}\n'
        "request = function()\n"
        "  i = i % n + 1\n"
        '  return wrk.format("GET", "/api/v1/statusTask/demo-echo?taskId=" .. ids[i], headers)\n'
        "end\n"
    )
    return script


def read_rate(wrk: str, base_url: str, script: Path, seconds: int, warmup: int) -> WrkResult:
    if warmup:
        run_wrk(wrk, base_url + "/", warmup, ["-s", str(script)])
    result = run_wrk(wrk, base_url + "/", seconds, ["-s", str(script)])
    if problems := result.problems():
        raise BenchError(f"status reads saw errors: {', '.join(problems)}")
    return result


@dataclass
class Side:
    """One running server with its table filled to `rows`, and the wrk script that reads it."""

    rows: int
    base_url: str
    script: Path
    fill_s: float
    ids: int


def prepare(stack: ExitStack, backend: Backend, label: str, *, rows: int, ids: int, folder: Path) -> Side:
    """Start a server on a database of its own, finish one task, fill the table to `rows`."""
    own = stack.enter_context(backend.sibling(f"gengate_scale_{label}"))

    def command(port: int, data: Path) -> tuple[list[str], dict[str, str]]:
        argv, env = gengate_command(port, data)
        return argv, env | own.env()

    name = f"gengate-{backend.name}-{label}"
    print(f"[{name}] starting on CPU {SERVER_CPU} ...", flush=True)
    log = RESULTS / f"scale-{backend.name}-{label}.log"
    client, env = stack.enter_context(serve(Target(name, command, gengate_setup), log, start_timeout_s=60))
    workload = gengate_setup(client, env)
    template = workload.status_path.rsplit("taskId=", 1)[1]
    conn = own.connect(Path(env["GENGATE_DATA_DIR"]))
    try:
        print(f"[{name}] filling to {rows:,} tasks ...", flush=True)
        fill_s = fill(own, conn, template, rows)
        sample = [
            str(row[0]) for row in own.rows(conn, f"SELECT id FROM tasks ORDER BY random() LIMIT {ids:d}")
        ]
    finally:
        conn.close()
    probe = f"/api/v1/statusTask/demo-echo?taskId={sample[-1]}"
    state = success(client.get(probe, headers={"Authorization": workload.authorization}))["state"]
    if state != "success":
        raise BenchError(f"a copied task reads as {state!r}, not 'success'")
    script = status_script(folder, sample, workload.authorization)
    return Side(rows, str(client.base_url).rstrip("/"), script, fill_s, len(sample))


def measure(backend: Backend, args: argparse.Namespace, wrk: str) -> dict[str, Any]:
    """Both servers stay up; the rounds alternate between them, so that a slow spell of the
    machine hits both sizes, and each round gives its own ratio."""
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gengate-bench-scale-")))
        sides = {
            label: prepare(stack, backend, label, rows=rows, ids=args.ids, folder=folder)
            for label, rows in (("small", args.small), ("large", args.rows))
        }
        rounds: dict[str, list[dict[str, Any]]] = {"small": [], "large": []}
        for number in range(1, args.rounds + 1):
            for label, side in sides.items():
                print(f"[round {number}] {label}: status reads over {side.ids:,} ids for {args.seconds}s ...")
                read = read_rate(wrk, side.base_url, side.script, args.seconds, args.warmup)
                rounds[label].append(asdict(read))
    each = [
        large["requests_per_s"] / small["requests_per_s"]
        for small, large in zip(rounds["small"], rounds["large"], strict=True)
    ]
    ratio = statistics.median(each)
    result: dict[str, Any] = {}
    for label, side in sides.items():
        median = sorted(rounds[label], key=lambda r: float(r["requests_per_s"]))[len(rounds[label]) // 2]
        result[label] = {"rows": side.rows, "fill_s": round(side.fill_s, 1), "ids": side.ids, **median}
    return result | {
        "ratio": round(ratio, 3),
        "bar": RATIO_BAR,
        "pass": ratio >= RATIO_BAR,
        "round_ratios": [round(x, 3) for x in each],
        "rounds": rounds,
    }


def report(backend: str, result: dict[str, Any]) -> None:
    print()
    print(f"{'backend':<12}{'tasks stored':>14}{'status req/s':>14}{'p50/p99 ms':>16}")
    for label in ("small", "large"):
        r = result[label]
        print(
            f"{backend:<12}{r['rows']:>14,}{r['requests_per_s']:>14,.0f}{r['p50_ms']:>9.2f}/{r['p99_ms']:<6.2f}"
        )
    verdict = "PASS" if result["pass"] else "BELOW"
    print(
        f"status read, {result['large']['rows']:,} vs {result['small']['rows']:,} stored: "
        f"{result['ratio']:.2f}x (median of rounds {result['round_ratios']}; bar >= {RATIO_BAR}x) {verdict}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="tasks stored for the large read")
    parser.add_argument("--small", type=int, default=1_000, help="tasks stored for the small read")
    parser.add_argument("--ids", type=int, default=1_000, help="distinct tasks the reads cycle over")
    parser.add_argument("--seconds", type=int, default=10, help="seconds of wrk per size")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of wrk per size before measuring")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs per size; medians reported")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--pg", action="store_true", help="PostgreSQL: start a cluster of our own")
    where.add_argument("--pg-url", help="PostgreSQL: this (disposable) database")
    args = parser.parse_args(argv)
    if not 2 <= args.small < args.rows or min(args.seconds, args.ids, args.rounds) < 1 or args.warmup < 0:
        parser.error("need 2 <= --small < --rows, --ids, --seconds and --rounds >= 1, --warmup >= 0")

    RESULTS.mkdir(parents=True, exist_ok=True)
    load_before = round(os.getloadavg()[0], 2)  # other work on the machine skews every figure
    with open_backend(pg=args.pg, pg_url=args.pg_url) as backend:
        try:
            result = measure(backend, args, ensure_wrk())
        except BenchError as exc:
            print(f"bench failed: {exc}", file=sys.stderr)
            return 1
    report(backend.name, result)
    settings = {"backend": backend.name, "seconds": args.seconds}
    write_results(f"scale-{backend.name}", settings | result, load_before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
