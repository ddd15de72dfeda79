"""Restarts: accepted tasks survive a crash, and the admin key made on first start is kept."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

PENDING_FIELDS = {"taskId", "state", "createTime"}


def test_accepted_tasks_survive_sigkill(start_gengate: Any, tmp_path: Path) -> None:
    data_dir = tmp_path / "shared-data"
    queue_only = start_gengate("queue-only", data_dir=data_dir, workers=0)
    key = queue_only.create_key("durable")["key"]
    inputs = [("demo-echo", {"mode": "echo", "data": {"i": i}, "duration_ms": 100}) for i in range(5)] + [
        ("demo-image", {"mode": "text-to-image", "prompt": f"durable {i}", "width": 32, "height": 32})
        for i in range(2)
    ]
    submitted = [(model, queue_only.submit_ok(key, model, task_input)) for model, task_input in inputs]
    assert len({task_id for _, task_id in submitted}) == len(submitted)
    created = {}
    for model, task_id in submitted:
        data = queue_only.status_data(key, model, task_id)
        assert data["state"] == "pending", data  # no worker runs in this server
        assert PENDING_FIELDS <= set(data) <= PENDING_FIELDS | {"model", "progress", "queuePosition"}, data
        created[task_id] = data["createTime"]
    # One more, killed the moment its taskId is in hand: accepted means durable.
    last = queue_only.submit_ok(key, "demo-echo", {"mode": "echo", "data": "last"})
    assert queue_only.kill() == -9
    submitted.append(("demo-echo", last))

    restarted = start_gengate("restarted", data_dir=data_dir, admin_key=queue_only.admin_key)
    for model, task_id in submitted:
        data = restarted.wait_task(key, model, task_id, timeout=20)
        assert data["state"] == "success", data
        if task_id in created:
            assert data["createTime"] == created[task_id]
        urls = json.loads(data["resultJson"])["resultUrls"]
        assert urls
        assert all(url.startswith(restarted.base_url + "/files/") for url in urls), urls
        assert restarted.http.get(urls[0]).status_code == 200
    echoed = restarted.http.get(json.loads(data["resultJson"])["resultUrls"][0]).json()
    assert echoed["data"] == "last"


def test_running_task_of_a_killed_worker_runs_again(start_gengate: Any, tmp_path: Path) -> None:
    """A task whose worker died mid-run is claimed again once its lease expires."""
    data_dir = tmp_path / "lease-data"
    env = {"GENGATE_LEASE_S": "1"}
    first = start_gengate("dies-mid-run", data_dir=data_dir, env=env)
    key = first.create_key("lease")["key"]
    task_id = first.submit_ok(key, "demo-echo", {"mode": "echo", "duration_ms": 1500})
    first.wait_task(key, "demo-echo", task_id, until=lambda data: data["state"] == "processing", timeout=10)
    first.kill()

    second = start_gengate("takes-over", data_dir=data_dir, env=env, admin_key=first.admin_key)
    data = second.wait_task(key, "demo-echo", task_id, timeout=20)
    assert data["state"] == "success", data


def test_admin_key_made_on_first_start(start_gengate: Any, tmp_path: Path, assert_error: Any) -> None:
    data_dir = tmp_path / "fresh-data"
    first = start_gengate("no-admin-env", data_dir=data_dir, admin_key=None)
    key_file = data_dir / "admin_key"
    assert key_file.is_file()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((data_dir / "secret").stat().st_mode) == 0o600
    admin_key = key_file.read_text().strip()
    assert admin_key
    assert first.admin_key == admin_key
    assert admin_key in first.stderr()
    assert admin_key not in first.stdout()

    created = first.create_key("made-with-bootstrap-key")
    assert first.submit_ok(created["key"], "demo-echo", {"mode": "echo"})
    wrong = first.http.get("/admin/v1/keys", headers=first.auth(admin_key + "x"))
    assert_error(wrong, 401, "invalid_token")

    code = first.stop()
    assert code in (0, -15), first.log()
    assert "Application shutdown complete" in first.stderr()

    second = start_gengate("restart", data_dir=data_dir, admin_key=None)
    assert key_file.read_text().strip() == admin_key
    assert second.admin_key == admin_key
    assert "made now" not in second.stderr()
    listed = second.admin("GET", "/admin/v1/keys")
    assert listed.status_code == 200, listed.text
    assert created["id"] in {key["id"] for key in listed.json()["data"]["keys"]}


def test_admin_key_from_env_is_not_written(gengate_server: Any) -> None:
    assert not (gengate_server.data_dir / "admin_key").exists()
    assert gengate_server.admin_key not in gengate_server.stderr()
    response = gengate_server.admin("GET", "/admin/v1/keys")
    assert response.status_code == 200


def test_sigterm_lets_a_running_task_finish(start_gengate: Any, tmp_path: Path) -> None:
    """A graceful stop finishes (or hands back) running work; nothing is left `processing`."""
    data_dir = tmp_path / "graceful-data"
    first = start_gengate("graceful", data_dir=data_dir)
    key = first.create_key("graceful")["key"]
    task_id = first.submit_ok(key, "demo-echo", {"mode": "echo", "duration_ms": 600})
    first.wait_task(key, "demo-echo", task_id, until=lambda data: data["state"] == "processing", timeout=10)
    started = time.monotonic()
    first.stop()
    assert time.monotonic() - started < 8

    second = start_gengate("after-graceful", data_dir=data_dir, admin_key=first.admin_key, workers=0)
    data = second.status_data(key, "demo-echo", task_id)
    assert data["state"] == "success", data  # 0.6 s of work is well inside the 10 s grace
