"""The cluster on PostgreSQL with real processes and real signals: API processes, standalone
workers, crashes, pauses past a lease, and the database itself restarted under load."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from pgcluster import PgCluster

GENGATE = Path(sys.executable).parent / "gengate"
# The e2e fixtures' types, by their fixture names (conftest modules are not imported by name).
GengateServer = Any
Launcher = Any

#: Leases this short make the reaper act within a second or two.
SHORT_LEASE = {"GENGATE_LEASE_S": "1"}


@dataclass
class Worker:
    """A running `gengate worker`."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    workers: list[Worker] = []

    def start(data_dir: Path, env: dict[str, str], *args: str) -> Worker:
        log_path = tmp_path / f"worker-{len(workers)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(GENGATE), "worker", *args],
                env={**clean_env(), "GENGATE_DATA_DIR": str(data_dir), **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
            )
        worker = Worker(process, log_path)
        workers.append(worker)
        deadline = time.monotonic() + 30
        while "running" not in worker.log():
            assert process.poll() is None, worker.log()
            assert time.monotonic() < deadline, worker.log()
            time.sleep(0.05)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def clean_env() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith("GENGATE_")}


def query(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


def api(
    start_gengate: Launcher, url: str, *extra_args: str, env: dict[str, str] | None = None
) -> GengateServer:
    return start_gengate(
        "api", workers=0, env={"GENGATE_DATABASE_URL": url, **(env or {})}, extra_args=extra_args
    )


def test_api_processes_and_workers_share_postgres(
    pg_url: str, start_gengate: Launcher, start_worker: Callable[..., Worker]
) -> None:
    server = api(start_gengate, pg_url, "--processes", "2")
    env = {"GENGATE_DATABASE_URL": pg_url}
    start_worker(server.data_dir, env, "--models", "demo-echo", "--concurrency", "3")
    start_worker(server.data_dir, env, "--models", "demo-echo", "--concurrency", "3")
    key = server.create_key("cluster")["key"]
    ids = [server.submit_ok(key, "demo-echo", {"prompt": f"p{i}", "duration_ms": 1500}) for i in range(6)]
    owners: set[str] = set()
    deadline = time.monotonic() + 20
    while len(owners) < 2 and time.monotonic() < deadline:
        owners |= {
            row[0] for row in query(pg_url, "SELECT lease_owner FROM tasks WHERE lease_owner IS NOT NULL")
        }
        time.sleep(0.05)
    assert len(owners) == 2, "the tasks were not spread over both workers"
    for task_id in ids:
        data = server.wait_task(key, "demo-echo", task_id)
        assert data["state"] == "success", data
        # The result file a worker wrote is served by the API processes.
        (result_url,) = json.loads(data["resultJson"])["resultUrls"]
        assert httpx.get(result_url, timeout=10).json()["prompt"].startswith("p")


def test_worker_killed_mid_task_is_finished_by_another_once(
    pg_url: str, start_gengate: Launcher, start_worker: Callable[..., Worker]
) -> None:
    server = api(start_gengate, pg_url)
    env = {"GENGATE_DATABASE_URL": pg_url, **SHORT_LEASE}
    first = start_worker(server.data_dir, env, "--concurrency", "2")
    key = server.create_key("crash")["key"]
    task_id = server.submit_ok(key, "demo-echo", {"prompt": "survive", "duration_ms": 1500})
    server.wait_task(key, "demo-echo", task_id, until=lambda data: data["state"] == "processing")
    first.process.kill()
    first.process.wait(5)
    start_worker(server.data_dir, env, "--concurrency", "2")
    data = server.wait_task(key, "demo-echo", task_id, timeout=30)
    assert data["state"] == "success", data
    (row,) = query(pg_url, "SELECT attempts, state FROM tasks WHERE id = $1", task_id)
    assert tuple(row) == (2, "success")


def test_paused_worker_past_its_lease_cannot_record_a_stale_result(
    pg_url: str, start_gengate: Launcher, start_worker: Callable[..., Worker]
) -> None:
    server = api(start_gengate, pg_url)
    env = {"GENGATE_DATABASE_URL": pg_url, **SHORT_LEASE}
    paused = start_worker(server.data_dir, env, "--concurrency", "1")
    key = server.create_key("pause")["key"]
    task_id = server.submit_ok(key, "demo-echo", {"prompt": "pause", "duration_ms": 1200})
    server.wait_task(key, "demo-echo", task_id, until=lambda data: data["state"] == "processing")
    paused.process.send_signal(signal.SIGSTOP)
    start_worker(server.data_dir, env, "--concurrency", "1")
    done = server.wait_task(key, "demo-echo", task_id, timeout=30)
    assert done["state"] == "success", done
    (before,) = query(pg_url, "SELECT attempts, complete_time, files FROM tasks WHERE id = $1", task_id)
    assert before[0] == 2
    paused.process.send_signal(signal.SIGCONT)
    deadline = time.monotonic() + 15
    while not any(word in paused.log() for word in ("was lost", "refused")):
        assert time.monotonic() < deadline, paused.log()
        time.sleep(0.1)
    (after,) = query(pg_url, "SELECT attempts, complete_time, files FROM tasks WHERE id = $1", task_id)
    assert tuple(after) == tuple(before)


def test_api_killed_while_clients_submit_loses_no_accepted_task(pg_url: str, start_gengate: Launcher) -> None:
    server = api(start_gengate, pg_url)
    key = server.create_key("kill")["key"]
    accepted: list[str] = []
    stop = threading.Event()

    def submit_forever() -> None:
        with httpx.Client(base_url=server.base_url, timeout=5) as client:
            while not stop.is_set():
                try:
                    response = client.post(
                        "/api/v1/generateTask/demo-echo",
                        json={"input": {"prompt": "x"}},
                        headers=server.auth(key),
                    )
                except httpx.HTTPError:
                    return
                if response.status_code == 200:
                    accepted.append(response.json()["data"]["taskId"])

    threads = [threading.Thread(target=submit_forever) for _ in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    while len(accepted) < 100 and time.monotonic() < deadline:
        time.sleep(0.02)
    server.kill()
    stop.set()
    for thread in threads:
        thread.join(10)
    assert len(accepted) >= 100
    stored = {row[0] for row in query(pg_url, "SELECT id FROM tasks")}
    missing = set(accepted) - stored
    assert not missing, f"{len(missing)} accepted task(s) lost"


def test_postgres_restart_under_load_answers_503_then_recovers(
    own_pg_server: PgCluster, start_gengate: Launcher
) -> None:
    url = own_pg_server.url("gengate")
    server = start_gengate("api", env={"GENGATE_DATABASE_URL": url})
    key = server.create_key("restart")["key"]
    task_id = server.submit_ok(key, "demo-echo", {"prompt": "before"})
    statuses: list[int] = []
    codes: set[str] = set()
    with own_pg_server.down():
        time.sleep(0.5)
        for _ in range(10):
            for response in (
                server.submit(key, "demo-echo", {"prompt": "during"}),
                server.status(key, "demo-echo", task_id),
            ):
                statuses.append(response.status_code)
                if response.status_code != 200:
                    body = response.json()
                    codes.add(body["error"]["code"])
                    assert body["trace_id"]
            time.sleep(0.05)
    assert set(statuses) <= {200, 503}, statuses
    assert 503 in statuses
    assert codes == {"unavailable"}
    deadline = time.monotonic() + 30
    while True:
        response = server.submit(key, "demo-echo", {"prompt": "after"})
        if response.status_code == 200:
            break
        assert response.status_code == 503, response.text
        assert time.monotonic() < deadline, "the gateway did not recover after PostgreSQL came back"
        time.sleep(0.2)
    after = response.json()["data"]["taskId"]
    assert server.wait_task(key, "demo-echo", after, timeout=30)["state"] == "success"
    assert server.alive()


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GENGATE), *args],
        env={**clean_env(), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_migrate_and_keys_on_postgres(pg_url: str, tmp_path: Path) -> None:
    env = {"GENGATE_DATABASE_URL": pg_url, "GENGATE_DATA_DIR": str(tmp_path / "data")}
    first = run_cli("migrate", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    shipped = resources.files("gengate.store") / "migrations" / "postgres"
    count = sum(1 for entry in shipped.iterdir() if entry.name.endswith(".sql"))
    assert count >= 4
    assert f"applied {count} migration(s)" in first.stdout
    again = run_cli("migrate", env=env, cwd=tmp_path)
    assert "applied 0 migration(s)" in again.stdout, again.stdout + again.stderr
    created = run_cli("keys", "create", "--name", "ops", env=env, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    (row,) = query(pg_url, "SELECT name, length(key_hash) FROM api_keys")
    assert tuple(row) == ("ops", 64)
    listed = run_cli("keys", "list", env=env, cwd=tmp_path)
    assert "ops" in listed.stdout


def test_worker_refuses_unknown_models(pg_url: str, tmp_path: Path) -> None:
    env = {"GENGATE_DATABASE_URL": pg_url, "GENGATE_DATA_DIR": str(tmp_path / "data")}
    done = run_cli("worker", "--models", "demo-echo,no-such-model", env=env, cwd=tmp_path)
    assert done.returncode != 0
    assert "no-such-model" in done.stderr
    assert "Traceback" not in done.stderr


def test_worker_drains_on_sigterm_and_hands_back_what_is_left(
    pg_url: str, start_gengate: Launcher, start_worker: Callable[..., Worker]
) -> None:
    server = api(start_gengate, pg_url)
    env = {"GENGATE_DATABASE_URL": pg_url}
    worker = start_worker(server.data_dir, env, "--concurrency", "2", "--grace", "1")
    key = server.create_key("drain")["key"]
    quick = server.submit_ok(key, "demo-echo", {"prompt": "quick", "duration_ms": 300})
    slow = server.submit_ok(key, "demo-echo", {"prompt": "slow", "duration_ms": 20_000})
    server.wait_task(key, "demo-echo", slow, until=lambda data: data["state"] == "processing")
    worker.process.terminate()
    assert worker.process.wait(30) == 0, worker.log()
    assert server.status_data(key, "demo-echo", quick)["state"] == "success"
    # The slow one outlived the grace period: back in the queue, not lost, not failed.
    assert server.status_data(key, "demo-echo", slow)["state"] == "pending"
    assert "draining" in worker.log()
