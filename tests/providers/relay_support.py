"""Helpers of the relay tests: a real upstream, loopback servers, and a gateway that relays.

The upstream is a second, real `gengate serve` process (it speaks every dialect); it is started
with the e2e suite's own launcher, loaded from its file so both suites start servers alike.
The gateway under test runs in this process (its API through httpx's ASGI transport, or on a
real socket when an upstream must call it back); its relays talk real HTTP to the upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from gengate.runtime import Gateway
from gengate.settings import load_settings

ADMIN_KEY = "gga_relay_tests_admin"
UPSTREAM_KEY_ENV = "RELAY_TEST_UPSTREAM_KEY"
#: Small delays so that polling and retries take milliseconds, not seconds.
FAST = {
    "poll_initial_s": 0.05,
    "poll_factor": 1.5,
    "poll_max_s": 0.25,
    "retry_initial_s": 0.01,
    "retry_max_s": 0.2,
}
TERMINAL = frozenset({"success", "failed"})
#: A tiny picture keeps every upstream task and download cheap.
TINY = {"prompt": "a red fox", "width": 16, "height": 16}


# -- the upstream: a real `gengate serve` ---------------------------------------------------
@dataclass
class UpstreamServer:
    """The upstream gengate and an API key on it."""

    server: Any
    key: str

    @property
    def base_url(self) -> str:
        return str(self.server.base_url)

    @property
    def data_dir(self) -> Path:
        return Path(self.server.data_dir)

    def tasks(self, limit: int = 20) -> list[dict[str, Any]]:
        """The key's upstream tasks, newest first."""
        response = self.server.http.get(
            "/api/v1/tasks", params={"limit": limit}, headers=self.server.auth(self.key)
        )
        assert response.status_code == 200, response.text
        tasks: list[dict[str, Any]] = response.json()["data"]["tasks"]
        return tasks

    async def new_task(self, before: set[str], timeout: float = 30.0) -> dict[str, Any]:
        """The first upstream task whose id is not in `before`, once there is one."""
        deadline = time.monotonic() + timeout
        while True:
            new = [task for task in self.tasks(limit=50) if task["taskId"] not in before]
            if new:
                return new[-1]
            assert time.monotonic() < deadline, "no new upstream task"
            await asyncio.sleep(0.05)

    def wait(self, model: str, task_id: str, until: Any = None, timeout: float = 30.0) -> dict[str, Any]:
        data: dict[str, Any] = self.server.wait_task(
            self.key, model, task_id, until or (lambda d: d["state"] in TERMINAL), timeout
        )
        return data


# -- servers in this process ------------------------------------------------------------------
def bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def serve(app: ASGIApp, sock: socket.socket | None = None) -> AsyncIterator[str]:
    """Run `app` under uvicorn on a loopback socket of this event loop; yields its base URL."""
    sock = sock or bound_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="auto", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + 30
    while not server.started:
        if task.done():
            task.result()
        assert time.monotonic() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@dataclass
class FlakyProxy:
    """In front of the upstream: answers the scripted failures first, then passes through.

    `script` holds `(path fragment, status, headers)`: the next request whose path contains the
    fragment gets that status instead. `mode` "down" answers 503 to everything, "hang" waits
    `hang_s` before passing on. `seen` records `(method, path, headers)` of every request.
    """

    target: str
    script: list[tuple[str, int, dict[str, str]]] = field(default_factory=list)
    mode: str = "pass"
    hang_s: float = 5.0
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    url: str = ""

    def app(self) -> Starlette:
        methods = ["GET", "POST"]
        return Starlette(routes=[Route("/{path:path}", self._handle, methods=methods)])

    def count(self, fragment: str) -> int:
        return sum(1 for _, path, _ in self.seen if fragment in path)

    async def _handle(self, request: Request) -> Response:
        path = request.url.path
        self.seen.append((request.method, path, dict(request.headers)))
        for index, (fragment, status, headers) in enumerate(self.script):
            if fragment in path:
                del self.script[index]
                return _error(status, headers)
        if self.mode == "down":
            return _error(503, {})
        if self.mode == "hang":
            await asyncio.sleep(self.hang_s)
        forwarded = {
            name: value
            for name, value in request.headers.items()
            if name in ("authorization", "idempotency-key", "content-type")
        }
        async with httpx.AsyncClient(base_url=self.target, timeout=30) as client:
            answer = await client.request(
                request.method,
                path,
                params=request.query_params,
                content=await request.body(),
                headers=forwarded,
            )
        kept = {
            name: value for name, value in answer.headers.items() if name in ("content-type", "x-trace-id")
        }
        return Response(answer.content, answer.status_code, headers=kept)


def _error(status: int, headers: dict[str, str]) -> Response:
    code = {400: "bad_request", 429: "too_many_requests", 503: "unavailable"}.get(status, "api_error")
    body = {
        "code": status,
        "message": "scripted",
        "data": None,
        "error": {"code": code, "message": "scripted"},
    }
    return JSONResponse(body, status, headers=headers)


# -- the gateway under test -------------------------------------------------------------------
@dataclass
class Relaying:
    """A gateway that relays, and a client of its API."""

    gateway: Gateway
    http: httpx.AsyncClient
    key: str

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    async def submit(self, model: str, task_input: dict[str, Any]) -> str:
        response = await self.http.post(
            f"/api/v1/generateTask/{model}", json={"input": task_input}, headers=self.auth()
        )
        assert response.status_code == 200, response.text
        task_id: str = response.json()["data"]["taskId"]
        return task_id

    async def status(self, model: str, task_id: str, wait: float = 0) -> dict[str, Any]:
        params: dict[str, Any] = {"taskId": task_id}
        if wait:
            params["wait"] = wait
        response = await self.http.get(f"/api/v1/statusTask/{model}", params=params, headers=self.auth())
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    async def wait(
        self, model: str, task_id: str, until: Any = None, timeout: float = 30.0
    ) -> dict[str, Any]:
        """Long-poll until `until(data)` (default: a terminal state); fails after `timeout` s."""
        until = until or (lambda data: data["state"] in TERMINAL)
        deadline = time.monotonic() + timeout
        while True:
            data = await self.status(model, task_id, wait=1)
            if until(data):
                return data
            assert time.monotonic() < deadline, f"task {task_id} not as expected after {timeout} s: {data}"

    async def run(self, model: str, task_input: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        return await self.wait(model, await self.submit(model, task_input), timeout=timeout)

    async def result_urls(self, data: dict[str, Any]) -> list[str]:
        import json

        urls: list[str] = json.loads(data["resultJson"])["resultUrls"]
        return urls


def relay_provider(kind: str, base_url: str, **options: Any) -> dict[str, Any]:
    """A `[providers.<name>]` entry with the test key and fast schedules."""
    return {"kind": kind, "base_url": base_url, "api_key_env": UPSTREAM_KEY_ENV, **FAST, **options}


def relay_model(*providers: str, **fields: Any) -> dict[str, Any]:
    """A `[models.<id>]` entry: one attempt, so a transient failure ends the task at once."""
    return {"providers": list(providers), "modes": ["text-to-image"], "max_attempts": 1, **fields}


@contextlib.asynccontextmanager
async def relaying(
    tmp_path: Path,
    providers: dict[str, Any],
    models: dict[str, Any],
    *,
    listen: bool = False,
    **settings: Any,
) -> AsyncIterator[Relaying]:
    """A gateway with these providers and models. `listen` serves it on a real loopback socket
    with that address as its public URL, so upstreams can call it back."""
    sock = bound_socket() if listen else None
    public_url = f"http://127.0.0.1:{sock.getsockname()[1]}" if sock else None
    loaded = load_settings(
        data_dir=tmp_path / "gateway",
        admin_key=ADMIN_KEY,
        lease_s=5.0,
        public_url=public_url,
        providers=providers,
        models=models,
        **settings,
    )
    gateway = Gateway(loaded)
    if sock is not None:
        async with serve(gateway.asgi(), sock) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
            _, key = await gateway.keys.create("relay-test")
            yield Relaying(gateway, http, key)
        return
    async with gateway.running():
        _, key = await gateway.keys.create("relay-test")
        transport = httpx.ASGITransport(app=gateway.asgi())
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test", timeout=30) as http:
            yield Relaying(gateway, http, key)
