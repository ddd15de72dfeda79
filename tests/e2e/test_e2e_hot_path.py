"""The hot routes through a real `gengate serve`, whose protocol sends each answer in one write
(:mod:`gengate.server.coalesce`): reads that answer at once, reads that wait (long-polls, whose
answer comes from another turn of the loop), errors, and many of them on one keep-alive
connection."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.e2e

GengateServer = Any


def status(server: GengateServer, key: str, task_id: str, **params: Any) -> httpx.Response:
    response: httpx.Response = server.http.get(
        "/api/v1/statusTask/demo-echo", params={"taskId": task_id, **params}, headers=server.auth(key)
    )
    return response


def test_hot_reads_answer_on_one_connection(gengate_server: GengateServer, api_key: str) -> None:
    task_id = gengate_server.submit_ok(api_key, "demo-echo", {"prompt": "hot"})
    with httpx.Client(base_url=gengate_server.base_url, headers=gengate_server.auth(api_key)) as client:
        states = set()
        for _ in range(200):  # one connection, kept alive: each answer whole, none stuck behind
            response = client.get("/api/v1/statusTask/demo-echo", params={"taskId": task_id})
            assert response.status_code == 200
            assert int(response.headers["content-length"]) == len(response.content)
            states.add(response.json()["data"]["state"])
        assert "success" in states
        missing = client.get("/api/v1/statusTask/demo-echo", params={"taskId": "task_missing"})
        assert missing.status_code == 404
        assert missing.json()["trace_id"] == missing.headers["x-trace-id"]
        kie = client.get("/api/v1/jobs/recordInfo", params={"taskId": task_id})
        assert kie.status_code == 200
        assert kie.json()["data"]["taskId"] == task_id


def test_a_long_poll_waits_in_its_task_and_answers_on_the_change(
    gengate_server: GengateServer, api_key: str
) -> None:
    task_id = gengate_server.submit_ok(api_key, "demo-echo", {"prompt": "slow", "duration_ms": 1500})
    first = status(gengate_server, api_key, task_id).json()["data"]
    answers: list[dict[str, Any]] = []

    def poll() -> None:  # held by the server until the task moves (a progress step, or its end)
        seen = first
        while seen["state"] not in ("success", "failed"):
            response = status(gengate_server, api_key, task_id, wait=10)
            assert response.status_code == 200
            seen = response.json()["data"]
            answers.append(seen)

    started = time.monotonic()
    pollers = [threading.Thread(target=poll) for _ in range(4)]
    for poller in pollers:
        poller.start()
    for poller in pollers:
        poller.join(timeout=30)
    assert not any(poller.is_alive() for poller in pollers)
    assert time.monotonic() - started < 10  # answered by changes, not by the 10 s wait running out
    assert answers
    assert answers[-1]["state"] == "success"
    assert json.loads(answers[-1]["resultJson"])["resultUrls"]
