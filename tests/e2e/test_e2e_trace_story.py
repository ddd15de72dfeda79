"""`grep TRACE_ID` tells a task's whole story, across processes, in JSON lines that all parse.

Gateway A runs API and workers in separate processes (`gengate serve --workers 0` and
`gengate worker` on one data folder) and relays model `fox` to gateway B (another real
`gengate serve`); the client asks for a callback to a real receiver on loopback. The trace id A
gave the submit must be in A's lines of the submit, the claim, the upstream calls, the file
save, the end and the callback, in B's own lines about its task, and in the `X-Trace-Id`
headers B and the receiver got.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recording_http import RecordingServer, recording_receiver

pytestmark = pytest.mark.e2e

GENGATE = Path(sys.executable).parent / "gengate"
JSON_LOGS = {"GENGATE_LOG_FORMAT": "json", "GENGATE_WEBHOOK_ALLOW": "127.0.0.0/8"}
UPSTREAM_KEY_ENV = "TRACE_STORY_UPSTREAM_KEY"
#: What `gengate serve` prints itself (not log lines): the banner and where the admin key is.
BANNER = ("gengate listening on", "  API docs:", "admin key")


@pytest.fixture
def receiver() -> Iterator[RecordingServer]:
    with recording_receiver() as server:
        yield server


def _config(upstream_url: str) -> str:
    fast = "poll_initial_s = 0.05\npoll_max_s = 0.25\nretry_initial_s = 0.01\nretry_max_s = 0.2\n"
    return (
        f'[providers.up]\nkind = "apixo"\nbase_url = "{upstream_url}"\napi_key_env = "{UPSTREAM_KEY_ENV}"\n'
        f"{fast}\n"
        '[models.fox]\nproviders = ["up:demo-image"]\nmodes = ["text-to-image"]\nmax_attempts = 1\n'
    )


def _parsed(text: str, where: str) -> list[dict[str, Any]]:
    """Every log line of a process's output as JSON (the banner aside); one that does not parse fails."""
    records = []
    for line in text.splitlines():
        if not line.strip() or line.startswith(BANNER):
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"a log line of {where} is not JSON: {line!r}")
    return records


def _about(records: list[dict[str, Any]], trace_id: str) -> list[dict[str, Any]]:
    return [r for r in records if r.get("trace_id") == trace_id]


def _one(records: list[dict[str, Any]], what: str, **fields: Any) -> dict[str, Any]:
    """The first record whose event contains `what` and whose fields match."""
    for record in records:
        if what in str(record.get("event", "")) and all(record.get(k) == v for k, v in fields.items()):
            return record
    pytest.fail(f"no line {what!r} {fields} among:\n" + "\n".join(map(json.dumps, records)))


def test_one_trace_id_tells_a_relayed_task_and_its_callback(
    start_gengate: Any, receiver: RecordingServer, tmp_path: Path
) -> None:
    upstream = start_gengate("trace-b", env=JSON_LOGS)
    upstream_key = upstream.create_key("relay")["key"]
    env = {**JSON_LOGS, UPSTREAM_KEY_ENV: upstream_key}
    api = start_gengate("trace-a", workers=0, env=env, config=_config(upstream.base_url))
    worker_log = tmp_path / "worker.log"
    with worker_log.open("wb") as out:
        worker = subprocess.Popen(
            [str(GENGATE), "worker", "--config", str(api.workdir / "gengate.toml")],
            env={**api.env, "GENGATE_DATA_DIR": str(api.data_dir)},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=api.workdir,
        )
    try:
        key = api.create_key("story")
        callback = f"http://127.0.0.1:{receiver.port}/hook?page=1"
        response = api.submit(
            key["key"],
            "fox",
            {"prompt": "a red fox", "width": 16, "height": 16},
            request_type="callback",
            callback_url=callback,
        )
        assert response.status_code == 200, response.text
        trace_id = response.headers["x-trace-id"]
        task_id = response.json()["data"]["taskId"]
        data = api.wait_task(key["key"], "fox", task_id, timeout=30)
        assert data["state"] == "success", (data, worker_log.read_text(errors="replace"))
        receiver.first(timeout_s=20)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    api.stop()
    upstream.stop()

    # The headers the upstream and the receiver got.
    assert receiver.arrived[0].headers["x-trace-id"] == trace_id
    api_lines = _parsed(api.stdout() + api.stderr(), "A's API process")
    worker_lines = _parsed(worker_log.read_text(errors="replace"), "A's worker")
    upstream_lines = _parsed(upstream.stdout() + upstream.stderr(), "B")

    # A's API process: the submit's request line, the callback attempt and httpx's line of it.
    story = _about(api_lines, trace_id)
    submit = _one(story, "request", route="/api/v1/generateTask/{model}", task_id=task_id)
    assert (submit["method"], submit["status"], submit["key_id"]) == ("POST", 200, key["id"])
    _one(story, "callback", task_id=task_id)
    _one(story, "HTTP Request: POST http://127.0.0.1", task_id=task_id)

    # A's worker: the claim, the upstream's calls, the file save, the end; every one of its
    # lines about the task has the trace id (none names the task without it).
    story = _about(worker_lines, trace_id)
    _one(story, "claimed task", task_id=task_id, attempt=1)
    _one(story, f"HTTP Request: POST {upstream.base_url}/api/v1/generateTask/demo-image", task_id=task_id)
    _one(story, "saved 1 result file", task_id=task_id)
    _one(story, "ended success", task_id=task_id)
    untraced = [r for r in worker_lines if task_id in json.dumps(r) and r.get("trace_id") != trace_id]
    assert untraced == []

    # B got the trace id in `X-Trace-Id`: its own request line and its worker's lines say it.
    story = _about(upstream_lines, trace_id)
    theirs = _one(story, "request", route="/api/v1/generateTask/{model}")
    _one(story, "claimed task", task_id=theirs["task_id"])
    _one(story, "ended success", task_id=theirs["task_id"])
    assert theirs["task_id"].startswith("task_")
