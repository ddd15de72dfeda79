"""Real cog servers for the tests (the cog provider's and end-to-end): `python -m cog.server.http`.

The `cog` package from PyPI serves a predictor without Docker. Its worker is started as
`python` from `PATH`, so the interpreter running the tests (the project's virtual environment)
goes first on `PATH`. A server starts in well under a second.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx

PREDICTORS = Path(__file__).parent / "providers" / "cog" / "predictors"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class CogServer:
    """One running cog server. Fields: `url`, `process`, `log` (its output file)."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def health(self) -> str:
        try:
            return str(httpx.get(self.url + "/health-check", timeout=2).json()["status"])
        except httpx.HTTPError:
            return "UNREACHABLE"

    def wait_for(self, *statuses: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while (status := self.health()) not in statuses:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"cog server exited ({self.process.returncode}): {self.log.read_text()[-2000:]}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"cog server at {self.url} is {status}, not {statuses}")
            time.sleep(0.05)
        return status

    def kill(self) -> None:
        """Kill the server and its worker at once, as a crash or an OOM kill would."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def start_cog(
    predictor: str,
    workdir: Path,
    *,
    port: int | None = None,
    wait: bool = True,
    setup_s: float = 0,
    upload_url: str | None = None,
) -> CogServer:
    """Serve `predictors/<predictor>/<predictor>.py` on a free port (or `port`), from its folder;
    `setup_s`: how long its setup takes (the image predictor's); `upload_url`: where the server
    puts output files (then its outputs are their URLs, not `data:` URIs)."""
    port = port or free_port()
    folder = PREDICTORS / predictor
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "PORT": str(port),
        "COG_PREDICT_TYPE_STUB": f"{predictor}.py:Predictor",
        "PYTHONDONTWRITEBYTECODE": "1",
        "TEST_SETUP_S": str(setup_s),
    }
    log = workdir / f"cog-{predictor}-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cog.server.http",
                "--host",
                "127.0.0.1",
                *(["--upload-url", upload_url] if upload_url else []),
            ],
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = CogServer(f"http://127.0.0.1:{port}", process, log)
    if wait:
        try:
            server.wait_for("READY", "SETUP_FAILED")
        except BaseException:
            server.stop()
            raise
    return server


class _Uploads(BaseHTTPRequestHandler):
    """Keeps what cog PUTs (its `--upload-url`) and serves it back, as a bucket would."""

    files: ClassVar[dict[str, tuple[str, bytes]]] = {}

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.files[self.path] = (self.headers.get("Content-Type", "application/octet-stream"), body)
        self.send_response(201)
        self.end_headers()

    def do_GET(self) -> None:
        found = self.files.get(self.path)
        if found is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", found[0])
        self.send_header("Content-Length", str(len(found[1])))
        self.end_headers()
        self.wfile.write(found[1])

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def upload_store() -> Iterator[str]:
    """A loopback bucket for cog's `--upload-url`; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Uploads)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/uploads/"
    finally:
        server.shutdown()
        server.server_close()
