"""A real `gengate serve` calls back a receiver that answers a gzip bomb: its memory stays put.

The bar of issue 19: a 1 GiB gzip reply from a callback receiver leaves the gateway's peak
memory under 200 MB above idle. The peak is the kernel's own high-water mark of the server
process (`VmHWM` in `/proc/PID/status`), read once the server is idle and again after the
attempts are recorded. The receiver answers three callbacks: a gzip bomb with 200, one with
500, and 1.5 GiB of plain chunked body with 500. Before the fix they took the process from
72 MiB to 5.2 GiB; now it grows by about 2 MiB.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from hostile_http import MIB, HostileServer, bomb_reply, endless_reply

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc"),
]

ECHO: dict[str, Any] = {"mode": "echo", "prompt": "e2e bounded callback"}
#: The issue's bar.
GROWTH_LIMIT = 200 * 1000 * 1000


def peak_rss(pid: int) -> int:
    """The process's peak resident memory so far, in bytes (the kernel's `VmHWM`)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM line")


def first_attempt(server: Any, key: str, task_id: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = server.http.get(f"/api/v1/tasks/{task_id}/deliveries", headers=server.auth(key))
        assert response.status_code == 200, response.text
        found = response.json()["data"]["deliveries"]
        if found and found[0]["attempts"]:
            attempt: dict[str, Any] = found[0]["attempts"][0]
            return attempt
        assert time.monotonic() < deadline, f"no attempt recorded within {timeout} s: {found}"
        time.sleep(0.05)


def test_huge_callback_answers_leave_peak_memory_near_idle(start_gengate: Any) -> None:
    replies = {"/bomb-200": bomb_reply(200), "/bomb-500": bomb_reply(500), "/plain-500": endless_reply(500)}
    server = start_gengate(
        "bounded-callbacks",
        env={"GENGATE_WEBHOOK_ALLOW": "127.0.0.0/8", "GENGATE_WEBHOOK_RETRY_SCHEDULE": "0,60"},
    )
    key = server.create_key("bounded")["key"]
    with HostileServer(lambda method, path: replies[path]).in_thread() as receiver:
        idle = peak_rss(server.process.pid)
        attempts = {}
        for path in replies:
            task_id = server.submit_ok(
                key, "demo-echo", ECHO, request_type="callback", callback_url=receiver.base_url + path
            )
            attempts[path] = first_attempt(server, key, task_id)
        after = peak_rss(server.process.pid)

    growth = after - idle
    print(f"\npeak RSS idle {idle / MIB:.0f} MiB, after {after / MIB:.0f} MiB, growth {growth / MIB:.1f} MiB")
    assert [attempts[path]["statusCode"] for path in replies] == [200, 500, 500], attempts
    assert attempts["/bomb-500"]["error"] == "HTTP 500: " + "x" * 200  # the excerpt, inflated alone
    assert growth < GROWTH_LIMIT, f"peak memory grew {growth / MIB:.0f} MiB over idle {idle / MIB:.0f} MiB"
    assert server.alive()
    assert "Traceback" not in server.log()
