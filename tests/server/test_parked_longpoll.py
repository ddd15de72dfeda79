"""Long-polls parked without a coroutine (:mod:`gengate.api.parked`), through a real uvicorn
with the real app, in raw HTTP, on a gateway without workers (its tasks stay pending until
canceled): many polls of a task answered after one change with one read, a change between
a poll's read and its park, the deadline, a client that leaves, KIE's `recordInfo`, the ASGI
path that still awaits the change, a stopping server, and the connection after a held answer.

Where the test must know that polls are parked, or that the hub let go of a task, it looks
at the hub's private `_watched` (read from the test's thread, never changed): nothing public
tells it, and a poll the hub keeps after its client left is exactly the leak to catch.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from test_hot_lane_app import STATUS, call, create_key

from gengate.runtime import Gateway
from gengate.server.run import server_config
from gengate.settings import Settings
from observability.logcapture import configure_logs
from raw_http import connect, response, responses
from raw_http import running as running_server

__all__ = ["configure_logs"]

CANCEL = "/api/v1/cancelTask/demo-echo?taskId="
RECORD = "/api/v1/jobs/recordInfo?taskId="
STATUS_ROUTE = "/api/v1/statusTask/{model}"
#: Bound on every wait for the server to reach a state (never reached when things work).
PATIENCE_S = 5.0


class FanOutReads:
    """The store's `get_task`, counting the reads the hub's fan-outs make (a parked poll is
    read for by a fan-out; a request's own read or a cancel's is not counted)."""

    def __init__(self, gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        #: A task whose next read by a request (not a fan-out) is followed by its cancel, committed
        #: and announced before the request goes on with what it read: a change between a
        #: poll's read and its park.
        self.cancel_after_read: str | None = None
        hub, store = gateway.hub, gateway.store
        original = store.get_task

        async def get_task(task_id: str) -> Any:
            if asyncio.current_task() in hub._fan_outs:
                self.count += 1
                return await original(task_id)
            task = await original(task_id)
            if task_id == self.cancel_after_read:
                self.cancel_after_read = None
                clock = hub.clock
                await store.cancel(task_id)
                for _ in range(100):  # (announced after the commit, maybe a turn of the loop later)
                    if hub.clock != clock:
                        break
                    await asyncio.sleep(0)
            return task

        monkeypatch.setattr(gateway.store, "get_task", get_task)


Idle = tuple[int, Gateway, Any, FanOutReads, Any]


@pytest.fixture
def idle_server(settings: Settings, configure_logs: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Idle]:
    """The real app in a real uvicorn; no workers, so a task stays pending until canceled."""
    captured = configure_logs("info", "json")  # before the app is built, which binds the access log
    idle = settings.model_copy(update={"workers": 0})
    gateway = Gateway(idle)
    reads = FanOutReads(gateway, monkeypatch)  # before any poll parks: a parked poll keeps its fetch
    with running_server(server_config(gateway.asgi(), idle)) as (port, server):
        yield port, gateway, captured, reads, server


def pending_task(port: int, key: str) -> str:
    body = orjson.dumps({"input": {"prompt": "parked"}})
    status, _, submitted = call(
        port, "POST", "/api/v1/generateTask/demo-echo", f"Authorization: Bearer {key}", body=body
    )
    assert status == 200, submitted
    return str(submitted["data"]["taskId"])


def send(port: int, path: str, *headers: str) -> socket.socket:
    """A `GET` on a connection of its own, its answer left to read."""
    sock = connect(port)
    sock.sendall("\r\n".join([f"GET {path} HTTP/1.1", "Host: t", *headers, "", ""]).encode())
    return sock


def answer(sock: socket.socket) -> tuple[int, dict[str, str], Any]:
    with sock:
        status, headers, raw = response(sock)
    return status, headers, orjson.loads(raw)


def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        threading.Event().wait(0.005)


def parked(gateway: Gateway, task_id: str) -> int:
    watched = gateway.hub._watched.get(task_id)
    return len(watched.parked) if watched is not None else 0


def cancel(port: int, key: str, task_id: str) -> None:
    status, _, body = call(
        port, "POST", CANCEL + task_id, f"Authorization: Bearer {key}", "Content-Length: 0"
    )
    assert status == 200, body
    assert body["data"]["failCode"] == "CANCELED"


def test_many_polls_of_a_task_are_answered_after_one_change_with_one_read(idle_server: Idle) -> None:
    port, gateway, _captured, reads, _server = idle_server
    _key_id, key = create_key(port)
    auth = f"Authorization: Bearer {key}"
    task_id = pending_task(port, key)
    socks = [send(port, f"{STATUS}{task_id}&wait=30", auth) for _ in range(50)]
    until(lambda: parked(gateway, task_id) == 50, "50 polls parked")
    before = reads.count
    cancel(port, key, task_id)
    answers = [answer(sock) for sock in socks]
    assert reads.count == before + 1  # one read for the 50
    assert {status for status, _, _ in answers} == {200}
    bodies = [body for _, _, body in answers]
    assert all(body == bodies[0] for body in bodies)
    assert bodies[0]["data"]["state"] == "failed"
    assert bodies[0]["data"]["failCode"] == "CANCELED"
    assert bodies[0]["message"] == "success"
    assert len({headers["x-trace-id"] for _, headers, _ in answers}) == 50
    until(lambda: task_id not in gateway.hub._watched, "the hub lets go of the task")


def test_a_change_between_a_polls_read_and_its_park_is_not_missed(idle_server: Idle) -> None:
    """The poll read the task pending; it is canceled (and announced) before the poll parks.
    Parked as if nothing had happened, it would wait for its deadline (30 s, past the socket's
    patience): the hub reads the task again at once and the poll answers with the change."""
    port, gateway, _captured, reads, _server = idle_server
    _key_id, key = create_key(port)
    task_id = pending_task(port, key)
    reads.cancel_after_read = task_id
    status, _headers, body = answer(send(port, f"{STATUS}{task_id}&wait=30", f"Authorization: Bearer {key}"))
    assert reads.cancel_after_read is None  # the change did come between the read and the park
    assert status == 200, body
    assert (body["data"]["state"], body["data"]["failCode"]) == ("failed", "CANCELED")
    until(lambda: task_id not in gateway.hub._watched, "the hub lets go of the task")


def test_a_poll_of_an_unchanged_task_answers_at_its_deadline_as_it_stands(idle_server: Idle) -> None:
    port, gateway, _captured, _reads, _server = idle_server
    _key_id, key = create_key(port)
    task_id = pending_task(port, key)
    sock = send(port, f"{STATUS}{task_id}&wait=0.5", f"Authorization: Bearer {key}")
    until(lambda: parked(gateway, task_id) == 1, "the poll parked")
    status, _headers, body = answer(sock)
    assert status == 200, body
    assert (body["data"]["taskId"], body["data"]["state"]) == (task_id, "pending")
    # As a read without a wait answers (a pending task's queue position included, read for it).
    assert body == call(port, "GET", STATUS + task_id, f"Authorization: Bearer {key}")[2]
    until(lambda: task_id not in gateway.hub._watched, "the hub lets go of the task")


def test_a_client_that_leaves_is_let_go_and_logged_499(idle_server: Idle) -> None:
    port, gateway, captured, reads, _server = idle_server
    key_id, key = create_key(port)
    task_id = pending_task(port, key)

    def counted(status: str) -> float:
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in call(port, "GET", "/metrics")[2].splitlines()
            if line.startswith("gengate_http_request_duration_seconds_count{")
            and f'route="{STATUS_ROUTE}"' in line
            and f'status="{status}"' in line
        )

    before = counted("499")
    trace_id = "6d1f0a57-parked-and-left"
    sock = send(port, f"{STATUS}{task_id}&wait=30", f"Authorization: Bearer {key}", f"X-Trace-Id: {trace_id}")
    until(lambda: parked(gateway, task_id) == 1, "the poll parked")
    sock.close()
    until(lambda: task_id not in gateway.hub._watched, "the hub lets go of the poll whose client left")

    def access() -> list[dict[str, Any]]:
        return [
            record
            for record in captured.records()
            if record.get("logger") == "gengate.access" and record.get("trace_id") == trace_id
        ]

    until(lambda: bool(access()), "the request's access line")
    assert [(r["method"], r["route"], r["status"], r["key_id"]) for r in access()] == [
        ("GET", STATUS_ROUTE, 499, key_id)
    ]
    assert counted("499") == before + 1
    fan_out_reads = reads.count
    cancel(port, key, task_id)  # nobody waits any more: no read for anyone
    assert reads.count == fan_out_reads
    assert len(access()) == 1


def test_kie_polls_park_too_and_share_the_read_but_not_the_body(idle_server: Idle) -> None:
    port, gateway, _captured, reads, _server = idle_server
    _key_id, key = create_key(port)
    auth = f"Authorization: Bearer {key}"
    task_id = pending_task(port, key)
    kie = [send(port, f"{RECORD}{task_id}&wait=30", auth) for _ in range(2)]
    apixo = send(port, f"{STATUS}{task_id}&wait=30", auth)
    until(lambda: parked(gateway, task_id) == 3, "KIE's and APIXO's polls parked")
    before = reads.count
    cancel(port, key, task_id)
    kie_answers = [answer(sock) for sock in kie]
    apixo_status, _, apixo_body = answer(apixo)
    assert reads.count == before + 1
    for status, _headers, body in kie_answers:
        assert status == 200, body
        assert body["msg"] == "success"
        assert "message" not in body
        assert (body["data"]["taskId"], body["data"]["state"]) == (task_id, "fail")
        assert body["data"]["failCode"] == "CANCELED"
    assert kie_answers[0][2] == kie_answers[1][2]
    assert apixo_status == 200, apixo_body
    assert apixo_body["message"] == "success"
    assert "msg" not in apixo_body
    assert (apixo_body["data"]["state"], apixo_body["data"]["failCode"]) == ("failed", "CANCELED")


def test_a_poll_through_the_asgi_path_still_waits_for_the_change(idle_server: Idle) -> None:
    port, gateway, _captured, reads, _server = idle_server
    _key_id, key = create_key(port)
    task_id = pending_task(port, key)
    # The lane refuses a request with a body length: this one goes through the framework.
    sock = send(port, f"{STATUS}{task_id}&wait=30", f"Authorization: Bearer {key}", "Content-Length: 0")

    def followed() -> bool:
        watched = gateway.hub._watched.get(task_id)
        return watched is not None and bool(watched.waiters)

    until(followed, "the framework's poll waits on the task")
    assert parked(gateway, task_id) == 0  # a coroutine waits, nothing is parked
    before = reads.count
    cancel(port, key, task_id)
    status, _headers, body = answer(sock)
    assert status == 200, body
    assert (body["data"]["state"], body["data"]["failCode"]) == ("failed", "CANCELED")
    assert reads.count == before  # its own read, not a fan-out's
    until(lambda: task_id not in gateway.hub._watched, "the hub lets go of the task")


def test_a_stopping_server_answers_its_held_polls_at_once_and_closes(idle_server: Idle) -> None:
    """Held through the graceful timeout (15 s, past the socket's patience), the poll would
    keep its client from asking another process; it answers with the task as it stands."""
    port, gateway, _captured, _reads, server = idle_server
    _key_id, key = create_key(port)
    task_id = pending_task(port, key)
    sock = send(port, f"{STATUS}{task_id}&wait=30", f"Authorization: Bearer {key}")
    until(lambda: parked(gateway, task_id) == 1, "the poll parked")
    server.should_exit = True
    status, headers, body = answer(sock)
    assert status == 200, body
    assert (body["data"]["taskId"], body["data"]["state"]) == (task_id, "pending")
    assert headers["connection"] == "close"


def test_a_held_polls_connection_answers_in_order_and_stays_open(idle_server: Idle) -> None:
    """A request pipelined behind a held poll waits its turn; after the poll's answer the
    connection serves the next request (the held answer ends the cycle as any other)."""
    port, gateway, _captured, _reads, _server = idle_server
    _key_id, key = create_key(port)
    auth = f"Authorization: Bearer {key}"
    task_id, other_id = pending_task(port, key), pending_task(port, key)
    with connect(port) as sock:
        heads = [f"GET {STATUS}{task_id}&wait=30 HTTP/1.1", f"GET {STATUS}{other_id} HTTP/1.1"]
        sock.sendall("".join(f"{head}\r\nHost: t\r\n{auth}\r\n\r\n" for head in heads).encode())
        until(lambda: parked(gateway, task_id) == 1, "the poll parked")
        cancel(port, key, task_id)
        first, second = (orjson.loads(body) for _status, _headers, body in responses(sock, 2))
        assert (first["data"]["taskId"], first["data"]["state"]) == (task_id, "failed")
        assert (second["data"]["taskId"], second["data"]["state"]) == (other_id, "pending")
        sock.sendall(f"GET {STATUS}{task_id} HTTP/1.1\r\nHost: t\r\n{auth}\r\n\r\n".encode())
        status, _headers, body = response(sock)
        assert status == 200
        assert orjson.loads(body)["data"]["state"] == "failed"
