"""The hot lane (:mod:`gengate.server.hot_lane`): plain GETs of hot routes answered by the
connection's protocol below ASGI, checked against uvicorn's own path in raw HTTP on loopback.

A small app whose lane takes `/hot/...` and records what it was called with; every other
request reaches the echo app behind it. The real app's lane: `test_hot_lane_app.py`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from gengate.server.limits import ConnectionLimits
from gengate.server.protocol import GatewayConfig
from raw_http import PATIENCE_S, closed_by_server, connect, echo, response, responses, running

LIMITS = ConnectionLimits(max_header_bytes=4096, header_timeout_s=2.0, keep_alive_s=0.5, max_connections=3)


class Lane:
    """Takes `/hot/...`; `/hot/raise` fails. Answers once `gate` is set."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.answered: list[str] = []
        self.gate = threading.Event()
        self.entered = threading.Event()

    def reset(self) -> None:
        self.calls.clear()
        self.answered.clear()
        self.entered.clear()
        self.gate.set()

    def route_for(self, method: str, path: str) -> str | None:
        return path if method == "GET" and path.startswith("/hot/") else None

    async def answer(self, route: str, scope: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        self.calls.append({k: scope[k] for k in ("path", "query_string", "http_version", "headers")})
        self.entered.set()
        while not self.gate.is_set():
            await asyncio.sleep(0.01)
        if route == "/hot/raise":
            raise RuntimeError("the lane broke")
        body = orjson.dumps({"path": route, "lane": True})
        self.answered.append(route)
        headers = [(b"content-type", b"application/json"), (b"x-lane", b"yes")]
        return 203, [*headers, (b"content-length", str(len(body)).encode())], body


class LaneApp:
    def __init__(self) -> None:
        self.hot_lane = Lane()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await echo(scope, receive, send)


def config(app: Any, limits: ConnectionLimits = LIMITS) -> GatewayConfig:
    return GatewayConfig(
        app, limits=limits, loop="uvloop", lifespan="off", log_level="warning",
        timeout_keep_alive=limits.keep_alive_s,
    )  # fmt: skip


APP = LaneApp()


@pytest.fixture(scope="module")
def served() -> Iterator[int]:
    with running(config(APP)) as (port, _server):
        yield port


@pytest.fixture
def port(served: int) -> Iterator[int]:
    APP.hot_lane.reset()
    yield served
    APP.hot_lane.gate.set()


def get(path: str, *headers: str, version: str = "1.1") -> bytes:
    return "\r\n".join([f"GET {path} HTTP/{version}", "Host: t", *headers, "", ""]).encode()


def path_of(answer: tuple[int, dict[str, str], bytes]) -> str:
    return str(orjson.loads(answer[2])["path"])


def by_lane(answer: tuple[int, dict[str, str], bytes]) -> bool:
    return answer[1].get("x-lane") == "yes"


def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        assert time.monotonic() < deadline, "still not so"
        time.sleep(0.01)


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:  # refused, or reset from the backlog of the closed socket
        return True
    return False


# -- answered by the lane -------------------------------------------------------------------
def test_a_hot_get_is_answered_by_the_lane(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(get("/hot/a?taskId=t1&x=%20", "X-Trace-Id: abc-123"))
        status, headers, body = response(sock)
    assert (status, orjson.loads(body)) == (203, {"path": "/hot/a", "lane": True})
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    assert headers["server"] == "uvicorn"
    assert headers["date"].endswith(" GMT")
    assert "connection" not in headers
    [call] = APP.hot_lane.calls
    assert call["path"] == "/hot/a"
    assert call["query_string"] == b"taskId=t1&x=%20"
    assert call["http_version"] == "1.1"
    assert (b"x-trace-id", b"abc-123") in call["headers"]


@pytest.mark.parametrize(
    ("version", "extra"), [("1.0", []), ("1.0", ["Connection: keep-alive"]), ("1.1", ["Connection: close"])]
)
def test_a_request_that_ends_the_connection_gets_connection_close(
    port: int, version: str, extra: list[str]
) -> None:
    with connect(port) as sock:
        sock.sendall(get("/hot/c", *extra, version=version))
        answer = response(sock)
        assert closed_by_server(sock)
    assert by_lane(answer)
    assert answer[1]["connection"] == "close"
    assert APP.hot_lane.calls[0]["http_version"] == version


def test_a_hundred_requests_on_one_connection(port: int) -> None:
    with connect(port) as sock:
        for n in range(100):
            sock.sendall(get(f"/hot/{n}"))
            answer = response(sock)
            assert by_lane(answer)
            assert path_of(answer) == f"/hot/{n}"
    assert len(APP.hot_lane.calls) == 100


POST = b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"


@pytest.mark.parametrize(
    ("pipelined", "paths"),
    [
        ([get("/hot/1"), get("/hot/2")], ["/hot/1", "/hot/2"]),
        ([get("/hot/1"), get("/hot/2"), get("/hot/3")], ["/hot/1", "/hot/2", "/hot/3"]),
        ([POST, get("/hot/2")], ["/p", "/hot/2"]),
        ([get("/hot/1"), POST], ["/hot/1", "/p"]),
        ([get("/hot/1"), POST, get("/hot/3")], ["/hot/1", "/p", "/hot/3"]),
    ],
)
def test_pipelined_requests_are_answered_in_order_each_once(
    port: int, pipelined: list[bytes], paths: list[str]
) -> None:
    APP.hot_lane.gate.clear()  # the first waits: the others arrive while it is in flight
    with connect(port) as sock:
        sock.sendall(b"".join(pipelined))
        if paths[0] != "/p":
            assert APP.hot_lane.entered.wait(5)
        APP.hot_lane.gate.set()
        answers = responses(sock, len(paths))
        sock.sendall(get("/last"))  # the next answer is that of this one: none came twice
        assert path_of(response(sock)) == "/last"
    assert [path_of(answer) for answer in answers] == paths
    assert all(status in (200, 203) for status, _, _ in answers)
    assert all(orjson.loads(a[2])["body_bytes"] == 3 for a in answers if path_of(a) == "/p")


# -- left to ASGI ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("request_bytes", "path", "body_bytes"),
    [
        (b"GET /hot/b HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello", "/hot/b", 5),
        (get("/hot/b", "Transfer-Encoding: chunked") + b"5\r\nhello\r\n0\r\n\r\n", "/hot/b", 5),
        (b"GET /hot/a%20b HTTP/1.1\r\nHost: t\r\n\r\n", "/hot/a b", 0),
        (b"GET /hot/b HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n", "/hot/b", 0),
    ],
    ids=["content-length", "chunked", "percent", "content-length-0"],
)  # fmt: skip
def test_a_get_with_a_body_or_an_encoded_path_goes_to_asgi(
    port: int, request_bytes: bytes, path: str, body_bytes: int
) -> None:
    with connect(port) as sock:
        sock.sendall(request_bytes)
        first = response(sock)
        sock.sendall(get("/hot/after"))
        after = response(sock)
    assert not by_lane(first)
    assert (first[0], orjson.loads(first[2])) == (200, {"path": path, "body_bytes": body_bytes})
    assert by_lane(after)  # the connection is still in step for the next request
    assert [call["path"] for call in APP.hot_lane.calls] == ["/hot/after"]


def test_a_get_expecting_100_continue_goes_to_asgi(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(get("/hot/e", "Expect: 100-continue"))
        (interim, _, _), (status, _, body) = responses(sock, 2)
    assert interim == 100
    assert (status, orjson.loads(body)) == (200, {"path": "/hot/e", "body_bytes": 0})
    assert APP.hot_lane.calls == []


def test_a_head_goes_to_asgi(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(b"HEAD /hot/h HTTP/1.1\r\nHost: t\r\n\r\n")
        head = sock.recv(65536)
        while not head.endswith(b"\r\n\r\n"):
            head += sock.recv(65536)
        sock.sendall(get("/hot/after"))
        assert by_lane(response(sock))  # so the HEAD came without a body
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"x-lane" not in head
    assert [call["path"] for call in APP.hot_lane.calls] == ["/hot/after"]


# -- connections ----------------------------------------------------------------------------
@pytest.mark.parametrize("behind", [b"", POST], ids=["alone", "with-a-request-pipelined-behind"])
def test_a_client_gone_while_the_lane_waits_is_no_error(
    port: int, behind: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    APP.hot_lane.gate.clear()
    with caplog.at_level(logging.DEBUG), connect(port) as sock:
        sock.sendall(get("/hot/gone") + behind)
        assert APP.hot_lane.entered.wait(5)
        sock.close()
        with connect(port) as other:  # while the first still waits
            other.sendall(b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
            assert path_of(response(other)) == "/p"
            APP.hot_lane.gate.set()
            until(lambda: "/hot/gone" in APP.hot_lane.answered)  # its end runs before the next read
            other.sendall(get("/hot/next"))
            assert path_of(response(other)) == "/hot/next"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert [r.getMessage() for r in caplog.records if r.name.startswith(("gengate", "uvicorn"))] == []


def test_a_malformed_request_behind_a_lane_answer_ends_the_connection_without_error(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """The 400 goes at once and ends the output; the lane's answer, ready later, is dropped."""
    APP.hot_lane.gate.clear()
    with caplog.at_level(logging.WARNING), connect(port) as sock:
        sock.sendall(get("/hot/first") + b"NOT HTTP\r\n\r\n")
        assert response(sock)[0] == 400
        APP.hot_lane.gate.set()
        until(lambda: "/hot/first" in APP.hot_lane.answered)
        with connect(port) as other:  # the end of the first answer runs before this is read
            other.sendall(get("/hot/next"))
            assert by_lane(response(other))
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_an_idle_connection_after_a_lane_answer_is_closed_after_keep_alive(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(get("/hot/idle"))
        assert by_lane(response(sock))
        assert closed_by_server(sock)


def test_a_lane_that_raises_closes_the_connection_and_is_logged(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="gengate.server"), connect(port) as sock:
        sock.sendall(get("/hot/raise"))
        assert closed_by_server(sock)
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "/hot/raise" in record.getMessage()
    assert record.exc_info
    assert "the lane broke" in str(record.exc_info[1])
    with connect(port) as sock:  # the server goes on
        sock.sendall(get("/hot/ok"))
        assert by_lane(response(sock))


def test_a_lane_answer_in_flight_is_delivered_through_a_graceful_shutdown() -> None:
    app = LaneApp()
    app.hot_lane.gate.clear()
    with running(config(app)) as (port, server), connect(port) as sock:
        sock.sendall(get("/hot/last"))
        assert app.hot_lane.entered.wait(5)
        server.should_exit = True
        until(lambda: refused(port))  # the server stopped listening: it asked each connection to end
        app.hot_lane.gate.set()
        status, headers, body = response(sock)
        assert closed_by_server(sock)
    assert (status, path_of((status, headers, body))) == (203, "/hot/last")
    assert headers["connection"] == "close"


def test_past_the_cap_the_503_comes_not_the_lane() -> None:
    app = LaneApp()
    app.hot_lane.reset()
    with running(config(app)) as (port, _server):
        held = [connect(port) for _ in range(LIMITS.max_connections)]
        try:
            for sock in held:
                sock.sendall(get("/hot/held"))
                assert by_lane(response(sock))
            with connect(port) as extra:
                extra.sendall(get("/hot/extra"))
                status, headers, _ = response(extra)
        finally:
            for sock in held:
                sock.close()
    assert status == 503
    assert headers["retry-after"] == "1"
    assert [call["path"] for call in app.hot_lane.calls] == ["/hot/held"] * LIMITS.max_connections
