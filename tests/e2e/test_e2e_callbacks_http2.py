"""Callbacks from a real `gengate serve` to an https receiver that offers HTTP/2: hypercorn in a
thread of the test process, its certificate from a test CA the gateway trusts through
`SSL_CERT_FILE` (as an operator's private CA would be). With `GENGATE_WEBHOOK_HTTP2=true` the
callbacks go over HTTP/2, signed as always, and the ones that follow share the connection the
first one opened."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import trustme
from hypercorn.asyncio import serve
from hypercorn.config import Config
from standardwebhooks import Webhook

from asgi_request import Seen, read_request
from pgcluster import free_port

pytestmark = pytest.mark.e2e


@dataclass
class H2Receiver:
    """hypercorn on 127.0.0.1 over TLS (h2 and http/1.1 offered), answering 200 to each POST."""

    certfile: Path
    keyfile: Path
    port: int = field(default_factory=free_port)
    arrivals: list[Seen] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Event | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/hook"

    async def app(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            return
        self.arrivals.append(await read_request(scope, receive))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    def start(self) -> H2Receiver:
        ready = threading.Event()

        async def main() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            config = Config()
            config.bind = [f"127.0.0.1:{self.port}"]
            config.certfile, config.keyfile = str(self.certfile), str(self.keyfile)
            config.accesslog = config.errorlog = None
            ready.set()
            await serve(self.app, config, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]

        self._thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Seen]:
        deadline = time.monotonic() + timeout
        while len(self.arrivals) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"{len(self.arrivals)} callbacks arrived, not {count}, within {timeout} s")
            time.sleep(0.01)
        return list(self.arrivals[:count])


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """The CA's certificate, and the receiver's certificate chain and key (for 127.0.0.1)."""
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    files = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca.cert_pem.write_to_path(str(files[0]))
    for blob in issued.cert_chain_pems:
        blob.write_to_path(str(files[1]), append=True)
    issued.private_key_pem.write_to_path(str(files[2]))
    return files


@pytest.fixture
def receiver(tls_files: tuple[Path, Path, Path]) -> Iterator[H2Receiver]:
    started = H2Receiver(tls_files[1], tls_files[2]).start()
    yield started
    started.close()


def test_callbacks_go_over_one_http2_connection_signed(
    start_gengate: Any, receiver: H2Receiver, tls_files: tuple[Path, Path, Path]
) -> None:
    server = start_gengate(
        "callbacks-h2",
        env={
            "GENGATE_WEBHOOK_ALLOW": "127.0.0.0/8",
            "GENGATE_WEBHOOK_HTTP2": "true",
            "SSL_CERT_FILE": str(tls_files[0]),
        },
    )
    key = server.create_key("h2")["key"]
    account = server.http.get("/api/v1/account", headers=server.auth(key))
    secret = account.json()["data"]["webhook_secret"]
    echo = {"mode": "echo", "prompt": "over h2"}

    def submit() -> str:
        task_id: str = server.submit_ok(
            key, "demo-echo", echo, request_type="callback", callback_url=receiver.url
        )
        return task_id

    first = submit()
    receiver.wait_for(1)
    others = [submit() for _ in range(5)]
    arrivals = receiver.wait_for(6)

    assert {arrival.http_version for arrival in arrivals} == {"2"}
    assert len({arrival.client_port for arrival in arrivals}) == 1  # the first one's connection
    delivered = [Webhook(secret).verify(arrival.body, arrival.headers) for arrival in arrivals]
    assert sorted(payload["data"]["taskId"] for payload in delivered) == sorted([first, *others])
    assert all(orjson.loads(arrival.body)["data"]["state"] == "success" for arrival in arrivals)
    assert arrivals[0].headers["host"] == f"127.0.0.1:{receiver.port}"
    assert server.status_data(key, "demo-echo", first)["state"] == "success"
