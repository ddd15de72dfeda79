"""The bounded httptools protocol, served by a real uvicorn on loopback and spoken to in raw HTTP.

The app behind it echoes what it received, so each test sees what reached the application.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import uvicorn

from gengate.server.limits import ConnectionLimits
from gengate.server.listen import address_of, listen
from gengate.server.protocol import GatewayConfig

PATIENCE_S = 10.0
LIMITS = ConnectionLimits(max_header_bytes=4096, header_timeout_s=0.5, keep_alive_s=0.5, max_connections=3)


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers 200 with the path and the size of the body it read."""
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = orjson.dumps({"path": scope["path"], "body_bytes": size})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@contextlib.contextmanager
def serving(limits: ConnectionLimits = LIMITS) -> Iterator[int]:
    sock = listen("127.0.0.1", 0)
    config = GatewayConfig(
        echo,
        limits=limits,
        loop="uvloop",
        lifespan="off",
        log_level="warning",
        timeout_keep_alive=limits.keep_alive_s,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + PATIENCE_S
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield address_of(sock)[1]
    finally:
        server.should_exit = True
        thread.join(PATIENCE_S)
        sock.close()


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with serving() as bound:
        yield bound


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=PATIENCE_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def responses(sock: socket.socket, count: int = 1) -> list[tuple[int, dict[str, str], bytes]]:
    """`count` responses, read by Content-Length."""
    data = b""
    found: list[tuple[int, dict[str, str], bytes]] = []
    while len(found) < count:
        if b"\r\n\r\n" in data:
            head, _, rest = data.partition(b"\r\n\r\n")
            status_line, *lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
            length = int(headers.get("content-length", "0"))
            if len(rest) >= length:
                found.append((int(status_line.split()[1]), headers, rest[:length]))
                data = rest[length:]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"closed after {len(found)} responses; pending {data!r}"
        data += chunk
    return found


def response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    return responses(sock)[0]


def closed_by_server(sock: socket.socket, within: float = PATIENCE_S) -> bool:
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([sock], [], [], left)[0]:
            return False
        try:
            if not sock.recv(65536):
                return True
        except ConnectionResetError:
            return True
    return False


def disconnected_while_trickling(sock: socket.socket, piece: bytes) -> bool:
    """Sends `piece` every 0.1 s until the server closes the connection (True) or PATIENCE_S passes."""
    deadline = time.monotonic() + PATIENCE_S
    while time.monotonic() < deadline:
        try:
            sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            return True
        if closed_by_server(sock, within=0.1):
            return True
    return False


def get(path: str = "/", head_bytes: int = 0) -> bytes:
    """A GET whose head is about `head_bytes` long (padded with one header)."""
    start = f"GET {path} HTTP/1.1\r\nHost: t\r\n".encode()
    pad = max(0, head_bytes - len(start) - len(b"X-Pad: \r\n\r\n"))
    return start + b"X-Pad: " + b"a" * pad + b"\r\n\r\n"


# -- request heads -------------------------------------------------------------------------
def test_a_head_under_the_limit_is_served(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(get(head_bytes=LIMITS.max_header_bytes - 200))
        assert response(sock)[0] == 200


@pytest.mark.parametrize("split", [False, True], ids=["one-send", "many-sends"])
def test_a_head_over_the_limit_gets_431_in_the_envelope(port: int, split: bool) -> None:
    request = get("/api/v1/statusTask/m", head_bytes=LIMITS.max_header_bytes + 500)
    with connect(port) as sock:
        if split:
            for at in range(0, len(request), 512):
                sock.sendall(request[at : at + 512])
                time.sleep(0.002)
        else:
            sock.sendall(request)
        status, headers, body = response(sock)
        assert closed_by_server(sock)
    assert status == 431
    envelope = json.loads(body)
    assert envelope["code"] == 431
    assert envelope["error"]["code"] == "bad_request"
    assert str(LIMITS.max_header_bytes) in envelope["error"]["message"]
    assert envelope["trace_id"] == headers["x-trace-id"]
    assert headers["connection"] == "close"


def test_a_long_url_counts_against_the_limit(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(get("/x?" + "q" * (LIMITS.max_header_bytes + 10)))
        assert response(sock)[0] == 431


def test_a_body_read_with_its_head_does_not_count_as_head(port: int) -> None:
    body = b"b" * (LIMITS.max_header_bytes * 20)
    with connect(port) as sock:
        sock.sendall(b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        status, _, answer = response(sock)
    assert status == 200, answer
    assert json.loads(answer)["body_bytes"] == len(body)


def test_pipelined_requests_each_start_a_new_head(port: int) -> None:
    """Many small requests in one send: the count restarts at each, none is refused."""
    count = 3 * LIMITS.max_header_bytes // 200
    with connect(port) as sock:
        sock.sendall(b"".join(get(f"/{n}", head_bytes=200) for n in range(count)))
        answers = responses(sock, count)
    assert [json.loads(body)["path"] for _, _, body in answers] == [f"/{n}" for n in range(count)]


def test_kept_alive_requests_each_get_a_fresh_head_budget(port: int) -> None:
    with connect(port) as sock:
        for _ in range(4):
            sock.sendall(get(head_bytes=LIMITS.max_header_bytes - 100))
            assert response(sock)[0] == 200


def test_a_malformed_request_gets_the_envelope_of_its_route(port: int) -> None:
    """The KIE routes say `msg`; a bad Content-Length is `bad_request`, with a trace id."""
    with connect(port) as sock:
        sock.sendall(b"POST /api/v1/jobs/createTask HTTP/1.1\r\nHost: t\r\nContent-Length: x\r\n\r\n")
        status, headers, body = response(sock)
    envelope = json.loads(body)
    assert status == 400
    assert envelope["msg"]
    assert envelope["error"]["code"] == "bad_request"
    assert envelope["trace_id"] == headers["x-trace-id"]


# -- time --------------------------------------------------------------------------------
def test_silence_after_connecting_is_closed(port: int) -> None:
    with connect(port) as sock:
        assert closed_by_server(sock)


def test_a_second_head_trickled_on_a_kept_alive_connection_is_closed(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(get())
        assert response(sock)[0] == 200
        sock.sendall(b"GET / HTTP/1.1\r\nX-Slow: ")
        assert disconnected_while_trickling(sock, b"a")


def test_blank_lines_do_not_keep_a_connection_open(port: int) -> None:
    """Empty lines before a request line start no message; they are still head bytes in time."""
    with connect(port) as sock:
        sock.sendall(get())
        assert response(sock)[0] == 200
        assert disconnected_while_trickling(sock, b"\r\n")


# -- connections at once -------------------------------------------------------------------
def test_past_the_cap_requests_get_503_in_their_route_envelope() -> None:
    with serving() as bound:
        held = [connect(bound) for _ in range(LIMITS.max_connections)]
        try:
            for sock in held:
                sock.sendall(get())
                assert response(sock)[0] == 200
            with connect(bound) as extra:
                extra.sendall(get("/api/v1/run/some-model"))
                status, headers, body = response(extra)
                assert closed_by_server(extra)
        finally:
            for sock in held:
                sock.close()
    envelope = json.loads(body)
    assert status == 503
    assert set(envelope) == {"error", "trace_id"}  # the XHuo dialect of /api/v1/run/
    assert envelope["error"]["code"] == "unavailable"
    assert envelope["trace_id"] == headers["x-trace-id"]
    assert headers["retry-after"] == "1"
