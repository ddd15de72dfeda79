"""A standalone worker's metrics, end to end: a real `gengate serve --workers 0` takes the task,
a real `gengate worker --metrics-port` runs it, and each process tells its own part: the API
the submit and the cluster's queue, the worker the claim, the run, the file save and the end."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from e2e_harness import harness as e2e
from metrics_scrape import parse, total

pytestmark = pytest.mark.e2e

GENGATE = Path(sys.executable).parent / "gengate"
DEADLINE_S = 30.0


@pytest.fixture
def api(tmp_path: Path) -> Iterator[e2e.GengateServer]:
    server = e2e.start_server(tmp_path, "api", workers=0)
    yield server
    server.stop()


def wait_for(condition: Callable[[], bool], what: str, log: Callable[[], str]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"{what}:\n{log()}"
        time.sleep(0.05)


def test_a_standalone_worker_serves_the_metrics_of_its_runs(api: e2e.GengateServer, tmp_path: Path) -> None:
    port = e2e.free_port()
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [str(GENGATE), "worker", "--metrics-port", str(port), "--concurrency", "2"],
            env={**e2e._clean_env(), "GENGATE_DATA_DIR": str(api.data_dir)},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        wait_for(lambda: "running" in log_path.read_text(), "the worker did not start", log_path.read_text)
        assert f"worker metrics at http://127.0.0.1:{port}/metrics" in log_path.read_text()
        key = api.create_key("metrics")["key"]
        task_id = api.submit_ok(key, "demo-echo", {"mode": "echo", "prompt": "hi"})

        def finished() -> bool:
            state: str = api.status(key, "demo-echo", task_id).json()["data"]["state"]
            return state == "success"

        wait_for(finished, "the task did not finish", log_path.read_text)
        from_worker = parse(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)
        from_api = parse(api.http.get("/metrics").text)
    finally:
        worker.terminate()
        worker.wait(15)
    assert worker.returncode == 0, log_path.read_text()

    labels = {"model": "demo-echo", "provider": "demo-echo"}
    ended = "gengate_tasks_ended_total"
    assert total(from_worker, ended, model="demo-echo", dialect="apixo", state="success") == 1
    assert total(from_worker, "gengate_task_queue_wait_seconds_count", **labels) == 1
    assert total(from_worker, "gengate_task_run_seconds_count", **labels) == 1
    assert total(from_worker, "gengate_file_save_seconds_count") == 1
    assert total(from_worker, "gengate_tasks_submitted_total") == 0
    assert not [s for s in from_worker if s.name == "gengate_queue_depth"]  # the API's to tell

    assert total(from_api, "gengate_tasks_submitted_total", model="demo-echo", dialect="apixo") == 1
    assert total(from_api, ended) == 0
    assert total(from_api, "gengate_queue_depth", model="demo-echo") == 0
    assert total(from_api, "gengate_tasks_running", model="demo-echo") == 0


def test_a_metrics_port_in_use_is_a_startup_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [str(GENGATE), "worker", "--metrics-port", str(port)],
            env={**e2e._clean_env(), "GENGATE_DATA_DIR": str(tmp_path / "data")},
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            check=False,
        )
    assert done.returncode == 1, done.stderr
    assert f"the worker's metrics cannot be served on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
