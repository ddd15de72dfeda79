"""Instructions per task, counted by valgrind: a figure the shared machine's noise cannot move.

Timed figures on this 2-core machine swing by tens of percent within the hour, so a change worth
a few percent cannot be seen in them. This runs `gengate serve` under `valgrind --tool=cachegrind`
(user-space instructions of every thread of the process; no kernel time, no waiting) twice, with
`--small` and then `--large` `demo-echo` tasks submitted over 64 keep-alive connections (as
`bench.callbacks` does) and drained by its in-process workers, with a callback each to
`bench.callbacks`' receiver or, with `--no-callbacks`, without. What the two runs share (start-up,
warm-up, shut-down) cancels out of

    instructions per task = (I(large) - I(small)) / (large - small)

Runs of one tree agree within about 2% (the order in which work batches up still varies): compare
trees in alternating runs, two or more each.

    python -m bench.instructions [--small 500] [--large 2500] [--no-callbacks]

Compare trees by putting each tree's `src` first on `PYTHONPATH`. valgrind is installed with
`apt-get` when missing; both runs together take about two minutes here.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.backend import Backend
from bench.callbacks import SUBMIT_PATH, TARGET, arrivals, receiver, submit_all
from bench.drain import wait_drained
from bench.run import LOAD_CPU, RESULTS, BenchError, Target, serve

#: Under valgrind the gateway runs many times slower: its start, its stop (which writes the
#: counts) and every wait stretch.
START_TIMEOUT_S = 600
STOP_TIMEOUT_S = 600
DRAIN_TIMEOUT_S = 1800
POLL_S = 0.5


def ensure_valgrind() -> str:
    found = shutil.which("valgrind")
    if found is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "valgrind"], check=True, capture_output=True)
        found = shutil.which("valgrind")
    if found is None:
        raise BenchError("valgrind is not installed and apt-get could not install it")
    return found


def counted_target(valgrind: str, out: Path) -> Target:
    """bench.callbacks' gateway, its command run under cachegrind writing to `out`."""

    def command(port: int, data: Path) -> tuple[list[str], dict[str, str]]:
        argv, env = TARGET.command(port, data)
        tool = [valgrind, "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out}"]
        return [*tool, sys.executable, *argv_of_gengate(argv)], env

    return Target("instructions", command, TARGET.setup)


def argv_of_gengate(argv: list[str]) -> list[str]:
    """`gengate serve ...` as this interpreter running gengate's command line: valgrind then
    counts the interpreter itself, not the console script's launcher."""
    return ["-c", "import sys; from gengate.cli.main import main; sys.argv[0] = 'gengate'; main()", *argv[1:]]


def instructions(out: Path) -> int:
    """The total `Ir` of a cachegrind output file."""
    for line in reversed(out.read_text().splitlines()):
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise BenchError(f"no summary in {out}")


def wait_for_callbacks(recv: httpx.Client, count: int) -> None:
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while arrivals(recv) < count:
        if time.monotonic() > deadline:
            raise BenchError(f"{count - arrivals(recv)} callbacks not received within {DRAIN_TIMEOUT_S}s")
        time.sleep(POLL_S)


def one_run(valgrind: str, tasks: int, callbacks: bool) -> int:
    """The gateway's instructions over a whole run of `tasks` tasks."""
    with tempfile.TemporaryDirectory(prefix="gengate-instructions-") as tmp:
        out = Path(tmp) / "cachegrind.out"
        with contextlib.ExitStack() as stack:
            recv, url = stack.enter_context(receiver(RESULTS / "instructions-receiver.log"))
            target = counted_target(valgrind, out)
            log_path = RESULTS / "instructions.log"
            gate, env = stack.enter_context(serve(target, log_path, START_TIMEOUT_S, STOP_TIMEOUT_S))
            gate.timeout = httpx.Timeout(60)
            auth = TARGET.setup(gate, env).authorization
            before = arrivals(recv)
            submit_all(gate, auth, url if callbacks else None, tasks)
            if callbacks:
                wait_for_callbacks(recv, before + tasks)
            else:
                backend = Backend("sqlite")
                conn = stack.enter_context(contextlib.closing(backend.connect(Path(env["GENGATE_DATA_DIR"]))))
                wait_drained(backend, conn, DRAIN_TIMEOUT_S)
        return instructions(out)  # written as the server stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--large", type=int, default=2500)
    parser.add_argument("--no-callbacks", dest="callbacks", action="store_false")
    args = parser.parse_args(argv)
    if args.large <= args.small:
        parser.error("--large must be more than --small")
    valgrind = ensure_valgrind()
    kind = "with a callback" if args.callbacks else "without a callback"
    print(f"[instructions] gateway under cachegrind, load on CPU {LOAD_CPU}; tasks {kind} ...", flush=True)
    try:
        counts = {n: one_run(valgrind, n, args.callbacks) for n in (args.small, args.large)}
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    per_task = (counts[args.large] - counts[args.small]) / (args.large - args.small)
    for n, count in counts.items():
        print(f"{n:>6} tasks: {count:,} instructions")
    print(f"instructions per task {kind} ({SUBMIT_PATH}): {per_task / 1e6:.3f} million")
    return 0


if __name__ == "__main__":
    sys.exit(main())
