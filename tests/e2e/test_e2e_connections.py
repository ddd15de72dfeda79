"""Connections a real `gengate serve` bounds: request heads (size and time), idle connections,
how many are open at once, malformed framing, and what it says when its port is taken.

These speak raw HTTP/1.1 over sockets: an HTTP client library would refuse to send most of it.
"""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

GENGATE = Path(sys.executable).parent / "gengate"
#: The harness's server and launcher (tests/e2e/conftest.py).
GengateServer = Any
Launcher = Any

#: Longest any of these tests waits for the server to act (close, answer); far above the settings used.
PATIENCE_S = 15.0


def connect(server: GengateServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response: its status, headers (lower-case names) and body (by Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response; got {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the body"
        body += chunk
    return int(status_line.split()[1]), headers, body[:length]


def closed_by_server(sock: socket.socket, within: float = PATIENCE_S) -> bool:
    """Whether the server closes the connection (EOF or reset) within `within` seconds;
    any bytes it sends meanwhile are read and dropped."""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([sock], [], [], left)
        if not readable:
            return False
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


def check_envelope(status: int, headers: dict[str, str], body: bytes, code: str) -> dict[str, Any]:
    """The APIXO error envelope, with the trace id in the header and the body."""
    assert headers["content-type"].startswith("application/json"), headers
    envelope: dict[str, Any] = json.loads(body)
    assert envelope["code"] == status, envelope
    assert envelope["data"] is None, envelope
    assert envelope["error"]["code"] == code, envelope
    assert envelope["error"]["message"], envelope
    assert envelope["trace_id"], envelope
    assert envelope["trace_id"] == headers["x-trace-id"], (envelope, headers)
    return envelope


def healthz(sock: socket.socket) -> int:
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    return read_response(sock)[0]


# -- the request head --------------------------------------------------------------------
def test_a_header_over_the_limit_gets_431_before_it_is_all_sent(gengate_server: GengateServer) -> None:
    """A 64 MiB header is never buffered whole: the answer comes while it is still being sent."""
    total = 64 << 20
    chunk = b"a" * 65536
    with connect(gengate_server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ")
        sent = 0
        while sent < total:
            _, writable, _ = select.select([], [sock], [], PATIENCE_S)
            assert writable, "the server stopped reading without answering"
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sent += sock.send(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        assert sent < total, "the whole header was read without an answer"
        status, headers, body = read_response(sock)
        assert status == 431, (status, body)
        check_envelope(status, headers, body, "bad_request")
        assert headers.get("connection") == "close", headers
        assert closed_by_server(sock)


def test_a_header_over_the_limit_in_one_send_gets_431(gengate_server: GengateServer) -> None:
    with connect(gengate_server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n")
        status, headers, body = read_response(sock)
        assert status == 431, (status, body)
        check_envelope(status, headers, body, "bad_request")
        assert closed_by_server(sock)


def test_a_large_body_in_the_first_read_is_not_mistaken_for_a_large_head(
    gengate_server: GengateServer, api_key: str
) -> None:
    """Head and body in one send: only the head counts against the header limit (the body, read
    whole, then fails the model's schema)."""
    body = json.dumps({"input": {"mode": "text-to-image", "prompt": "p" * 300_000}}).encode()
    request = (
        b"POST /api/v1/generateTask/demo-image HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {api_key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    with connect(gengate_server) as sock:
        sock.sendall(request)
        status, headers, answer = read_response(sock)
    envelope = check_envelope(status, headers, answer, "bad_request")
    assert status == 400, envelope
    assert "input.prompt" in envelope["error"]["message"], envelope


@pytest.fixture(scope="module")
def short_timeouts(start_gengate_module: Launcher) -> GengateServer:
    """A server that gives a request head 1 s and an idle keep-alive connection 1 s."""
    env = {"GENGATE_HEADER_TIMEOUT_S": "1", "GENGATE_KEEP_ALIVE_S": "1"}
    return start_gengate_module("short-timeouts", env=env, workers=0)


def test_a_client_trickling_its_header_is_disconnected(short_timeouts: GengateServer) -> None:
    with connect(short_timeouts) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        deadline = time.monotonic() + PATIENCE_S
        disconnected = False
        while time.monotonic() < deadline and not disconnected:
            try:
                sock.sendall(b"a")
            except (BrokenPipeError, ConnectionResetError):
                disconnected = True
                break
            disconnected = closed_by_server(sock, within=0.2)
        assert disconnected, "a header trickled for 15 s and the connection is still open"


def test_a_connection_that_never_sends_a_request_is_closed(short_timeouts: GengateServer) -> None:
    with connect(short_timeouts) as sock:
        assert closed_by_server(sock)


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(
    short_timeouts: GengateServer,
) -> None:
    """uvicorn's own default is 5 s; the setting's 1 s is what counts."""
    with connect(short_timeouts) as sock:
        assert healthz(sock) == 200
        assert healthz(sock) == 200  # kept alive between requests
        assert closed_by_server(sock, within=4.0)


# -- connections at once -------------------------------------------------------------------
def test_connections_past_the_cap_get_the_503_envelope(start_gengate: Launcher) -> None:
    server = start_gengate("capped", env={"GENGATE_MAX_CONNECTIONS": "3"}, workers=0)
    held: list[socket.socket] = []
    try:
        for _ in range(3):
            held.append(served_connection(server))
        with connect(server) as extra:
            extra.sendall(b"GET /api/v1/statusTask/demo-image?taskId=x HTTP/1.1\r\nHost: t\r\n\r\n")
            status, headers, body = read_response(extra)
            assert status == 503, (status, body)
            check_envelope(status, headers, body, "unavailable")
            assert headers.get("retry-after"), headers
            assert closed_by_server(extra)
        held.pop().close()
        served_connection(server).close()  # the cap counts open connections only
    finally:
        for sock in held:
            sock.close()


def served_connection(server: GengateServer) -> socket.socket:
    """A connection on which `/healthz` answered 200, retried while the server has not yet
    seen the close of an earlier connection (the harness's own probe, one a test closed)."""
    deadline = time.monotonic() + PATIENCE_S
    while True:
        sock = connect(server)
        status = healthz(sock)
        if status == 200:
            return sock
        sock.close()
        assert time.monotonic() < deadline, f"no connection served: {status}"
        time.sleep(0.1)


def test_every_process_of_several_enforces_the_limits(start_gengate: Launcher) -> None:
    """`--processes 2`: the limits reach the API processes uvicorn's supervisor starts."""
    env = {"GENGATE_MAX_HEADER_BYTES": "2048"}
    server = start_gengate("two-processes", env=env, workers=0, extra_args=("--processes", "2"))
    for _ in range(4):  # connections land on either process
        with connect(server) as sock:
            assert healthz(sock) == 200
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"a" * 3000 + b"\r\n\r\n")
            status, headers, body = read_response(sock)
            assert status == 431, body
            check_envelope(status, headers, body, "bad_request")
    assert "2 processes" in server.stderr()


# -- malformed framing ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "content_length",
    [b"abc", b"-1", b"1, 2", b"99999999999999999999999"],
    ids=["letters", "negative", "list", "huge"],
)
def test_a_malformed_content_length_gets_the_envelope(
    gengate_server: GengateServer, content_length: bytes
) -> None:
    with connect(gengate_server) as sock:
        sock.sendall(
            b"POST /api/v1/generateTask/demo-image HTTP/1.1\r\nHost: t\r\n"
            b"Content-Length: " + content_length + b"\r\n\r\n{}"
        )
        status, headers, body = read_response(sock)
        assert status == 400, (status, body)
        check_envelope(status, headers, body, "bad_request")
        assert closed_by_server(sock)


def test_two_content_lengths_get_the_envelope(gengate_server: GengateServer) -> None:
    with connect(gengate_server) as sock:
        sock.sendall(
            b"POST /api/v1/generateTask/demo-image HTTP/1.1\r\nHost: t\r\n"
            b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}"
        )
        status, headers, body = read_response(sock)
        assert status == 400, (status, body)
        check_envelope(status, headers, body, "bad_request")


# -- start-up --------------------------------------------------------------------------
@pytest.mark.parametrize("processes", [1, 2])
def test_a_port_in_use_is_one_clear_line(tmp_path: Path, processes: int) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = [str(GENGATE), "serve", "--host", "127.0.0.1", "--port", str(port)]
        args += ["--data-dir", str(tmp_path / "data"), "--processes", str(processes)]
        done = subprocess.run(
            args,
            check=False,
            cwd=tmp_path,
            env={"GENGATE_ADMIN_KEY": "adm"},
            capture_output=True,
            timeout=60,
            text=True,
        )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert f"127.0.0.1:{port}" in lines[0], output
    assert "address already in use" in lines[0].lower(), output
    assert "--port" in lines[0], output
    assert "GENGATE_PORT" in lines[0], output
    assert "listening" not in output, output
    assert "Traceback" not in output, output


def test_the_banner_names_the_address_the_docs_and_the_console(gengate_server: GengateServer) -> None:
    banner = gengate_server.stderr()
    listening = [line for line in banner.splitlines() if "listening on" in line]
    assert listening, banner
    assert gengate_server.base_url in listening[0], banner
    assert f"{gengate_server.base_url}/docs" in banner, banner
    assert f"{gengate_server.base_url}/console" in banner, banner
