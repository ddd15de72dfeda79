"""Expected events are one quiet log line: a client that goes away mid-body floods nothing.

Any key holder can open a request, send part of its body and close the socket, as often as
they like; a real `gengate serve` must log each at most once, below ERROR, with no traceback.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

DISCONNECTS = 20
#: What uvicorn itself says while it stops: not lines the disconnects caused.
_SHUTDOWN = ("Shutting down", "Waiting for", "Application shutdown complete", "Finished server process")


def _send_part_and_close(port: int, path: str, key: str, *, chunked: bool) -> None:
    """Headers announcing a 1000-byte body (or a chunked one), 10 bytes of it, then close."""
    framing = "Transfer-Encoding: chunked" if chunked else "Content-Length: 1000"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n"
    )
    part = b'{"input":{'
    body = b"%x\r\n%s\r\n" % (len(part), part) if chunked else part
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head.encode() + body)


def test_clients_leaving_mid_body_are_one_quiet_line_each(start_gengate: Any) -> None:
    server = start_gengate("log-quiet")
    key = server.create_key("leaver", credits=10)["key"]
    before = len(server.stderr())
    targets = [
        ("/api/v1/generateTask/demo-echo", key),
        ("/api/v1/jobs/createTask", key),
        ("/api/v1/run/demo-echo", key),
        ("/admin/v1/keys", server.admin_key),
    ]
    for i in range(DISCONNECTS):
        path, token = targets[i % len(targets)]
        _send_part_and_close(server.port, path, token, chunked=i % 2 == 1)
    # Still serving, and nothing was charged for the abandoned submits.
    account = server.http.get("/api/v1/account", headers=server.auth(key))
    assert account.status_code == 200
    assert account.json()["data"]["credits"] == 10
    # The disconnects are answered in their own time (a busy machine may answer the account
    # first): stopping before they are would cut the log short, not make it quieter.
    deadline = time.monotonic() + 10
    while server.stderr()[before:].count("disconnected") < DISCONNECTS and time.monotonic() < deadline:
        time.sleep(0.05)
    server.stop()
    log = server.stderr()[before:] + server.stdout()
    assert "Traceback" not in log, log
    assert "ERROR" not in log, log
    # The one request that was answered has its access line (GENGATE_ACCESS_LOG, on by default).
    answered = "route=/api/v1/account "
    caused = [
        line
        for line in log.splitlines()
        if line.strip() and answered not in line and not any(s in line for s in _SHUTDOWN)
    ]
    assert len(caused) <= DISCONNECTS, "\n".join(caused)
    told = [line for line in caused if "disconnected" in line]
    assert len(told) == DISCONNECTS, "\n".join(caused)
    assert all(" INFO " in line or " DEBUG " in line for line in told), "\n".join(told)
