"""A real uvicorn (the gateway's bounded protocol) on loopback, spoken to in raw HTTP over
sockets: for tests of what the protocol itself does with bytes, pipelining and connections."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import uvicorn

from gengate.server.limits import ConnectionLimits
from gengate.server.listen import address_of, listen
from gengate.server.protocol import GatewayConfig

PATIENCE_S = 10.0
Response = tuple[int, dict[str, str], bytes]


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
def running(config: uvicorn.Config) -> Iterator[tuple[int, uvicorn.Server]]:
    """The server of `config` in a thread, on a free port; stopped (gracefully) on leaving."""
    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + PATIENCE_S
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "the server did not start"
    try:
        yield address_of(sock)[1], server
    finally:
        server.should_exit = True
        thread.join(PATIENCE_S)
        sock.close()


@contextlib.contextmanager
def serving(limits: ConnectionLimits, app: Any = echo) -> Iterator[int]:
    config = GatewayConfig(
        app,
        limits=limits,
        loop="uvloop",
        lifespan="off",
        log_level="warning",
        timeout_keep_alive=limits.keep_alive_s,
    )
    with running(config) as (port, _server):
        yield port


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=PATIENCE_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def responses(sock: socket.socket, count: int = 1) -> list[Response]:
    """`count` responses, read by Content-Length."""
    data = b""
    found: list[Response] = []
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


def response(sock: socket.socket) -> Response:
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
