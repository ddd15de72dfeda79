"""The bounded httptools protocol, served by a real uvicorn on loopback and spoken to in raw HTTP.

The app behind it echoes what it received, so each test sees what reached the application.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from gengate.server.limits import ConnectionLimits
from raw_http import PATIENCE_S, closed_by_server, connect, response, responses, serving

LIMITS = ConnectionLimits(max_header_bytes=4096, header_timeout_s=0.5, keep_alive_s=0.5, max_connections=3)


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with serving(LIMITS) as bound:
        yield bound


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
    with serving(LIMITS) as bound:
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


# -- keep-alive ----------------------------------------------------------------------------
def test_an_idle_connection_is_closed_after_keep_alive_and_a_busy_one_is_not(port: int) -> None:
    """The keep-alive deadline (one of the loop's shared deadlines) closes a connection only
    once it stayed idle that long since its last answer: requests every 0.3 s (keep-alive
    0.5 s) keep it open past several deadlines, then it closes after the last answer."""
    with connect(port) as sock:
        started = time.monotonic()
        for _ in range(5):
            sock.sendall(get())
            assert response(sock)[0] == 200
            assert not closed_by_server(sock, within=0.3)
        last_answer = time.monotonic()
        assert last_answer - started > 3 * LIMITS.keep_alive_s
        assert closed_by_server(sock)
        assert time.monotonic() - last_answer >= LIMITS.keep_alive_s - 0.3
