"""A plain callback receiver in a thread, for tests that drive a real `gengate serve`
synchronously: every POST is answered 200 and kept as its path and headers (lower-case names)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple


class Arrival(NamedTuple):
    path: str
    headers: dict[str, str]


class RecordingServer(ThreadingHTTPServer):
    arrived: list[Arrival]

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def first(self, timeout_s: float) -> Arrival:
        """The first request to arrive; fails the test past `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while not self.arrived:
            assert time.monotonic() < deadline, "the callback never arrived"
            time.sleep(0.05)
        return self.arrived[0]


class _Recorder(BaseHTTPRequestHandler):
    server: RecordingServer

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.server.arrived.append(Arrival(self.path, {k.lower(): v for k, v in self.headers.items()}))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def recording_receiver() -> Iterator[RecordingServer]:
    server = RecordingServer(("127.0.0.1", 0), _Recorder)
    server.arrived = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
