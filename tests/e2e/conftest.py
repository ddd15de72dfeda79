"""End-to-end fixtures: real `gengate serve` processes driven over HTTP.

`gengate_server` is one session-wide server with the default settings (plus a `slow` model
from a config file); `start_gengate` starts extra servers with other settings for one test
and stops them after it. Every server logs to files in its own folder; when a test fails,
the logs of the servers it could have talked to are attached to the report.

Every response a server's `http` client receives must carry an `X-Trace-Id` header never
seen before: an httpx event hook checks it, so every request of every test checks it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

GENGATE = Path(sys.executable).parent / "gengate"
POLL_S = 0.05
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
TERMINAL = frozenset({"success", "failed"})
LOG_TAIL_CHARS = 20_000

#: Config of the default server: the demo models plus `slow`, which times out after 0.5 s.
DEFAULT_CONFIG = """\
[models.slow]
provider = "demo-echo"
timeout_s = 0.5
"""

_SERVERS: list[GengateServer] = []
_START_KEY = pytest.StashKey[float]()
_SEEN_TRACE_IDS: set[str] = set()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _check_trace_id(response: httpx.Response) -> None:
    """Every response, success or error, carries a fresh `X-Trace-Id`."""
    trace_id = response.headers.get("x-trace-id")
    where = f"{response.request.method} {response.request.url}"
    assert trace_id, f"no X-Trace-Id header on the response to {where} ({response.status_code})"
    assert trace_id not in _SEEN_TRACE_IDS, f"X-Trace-Id {trace_id} repeated on {where}"
    _SEEN_TRACE_IDS.add(trace_id)


def _clean_env() -> dict[str, str]:
    """The test process's environment without any `GENGATE_*` that could leak in."""
    return {name: value for name, value in os.environ.items() if not name.startswith("GENGATE_")}


@dataclass
class GengateServer:
    """A running `gengate serve` and what a test needs to talk to it."""

    name: str
    base_url: str
    port: int
    admin_key: str
    data_dir: Path
    workdir: Path
    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    http: httpx.Client
    args: list[str]
    env: dict[str, str]
    started_at: float = field(default_factory=time.monotonic)
    stopped_at: float | None = None

    # -- talking to it -------------------------------------------------------------
    def auth(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, path, headers=self.auth(self.admin_key), **kwargs)

    def create_key(self, name: str = "e2e", **fields: Any) -> dict[str, Any]:
        """A new API key through the admin API: its public fields plus `key`, the secret."""
        response = self.admin("POST", "/admin/v1/keys", json={"name": name, **fields})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["code"] == 200
        assert body["message"] == "success"
        data: dict[str, Any] = body["data"]
        assert data["key"]
        assert data["id"]
        assert data["name"] == name
        return data

    def update_key(self, key_id: str, **fields: Any) -> dict[str, Any]:
        response = self.admin("PATCH", f"/admin/v1/keys/{key_id}", json=fields)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    def submit(
        self, key: str, model: str, task_input: dict[str, Any], request_type: str = "async", **extra: Any
    ) -> httpx.Response:
        body = {"request_type": request_type, "input": task_input, **extra}
        return self.http.post(f"/api/v1/generateTask/{model}", json=body, headers=self.auth(key))

    def submit_ok(self, key: str, model: str, task_input: dict[str, Any], **extra: Any) -> str:
        """Submit and return the task id, checking the seed's submit response exactly."""
        response = self.submit(key, model, task_input, **extra)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"code", "message", "data"}, body
        assert body["code"] == 200
        assert body["message"] == "success"
        assert set(body["data"]) == {"taskId"}, body
        task_id: str = body["data"]["taskId"]
        return task_id

    def status(self, key: str, model: str, task_id: str) -> httpx.Response:
        return self.http.get(
            f"/api/v1/statusTask/{model}", params={"taskId": task_id}, headers=self.auth(key)
        )

    def status_data(self, key: str, model: str, task_id: str) -> dict[str, Any]:
        response = self.status(key, model, task_id)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"code", "message", "data"}, body
        assert body["code"] == 200
        assert body["message"] == "success"
        data: dict[str, Any] = body["data"]
        return data

    def wait_task(
        self,
        key: str,
        model: str,
        task_id: str,
        until: Callable[[dict[str, Any]], bool] = lambda data: data["state"] in TERMINAL,
        timeout: float = 20.0,
    ) -> dict[str, Any]:
        """Poll every 50 ms until `until(data)` holds; returns that status `data`."""
        deadline = time.monotonic() + timeout
        while True:
            data = self.status_data(key, model, task_id)
            if until(data):
                return data
            if time.monotonic() > deadline:
                pytest.fail(f"task {task_id} still not as expected after {timeout} s: {data}")
            time.sleep(POLL_S)

    # -- its life ----------------------------------------------------------------
    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, then SIGKILL if it has not exited within `timeout`; returns the exit code."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        return self._closed()

    def kill(self) -> int:
        """SIGKILL at once: a crash, as far as the data folder can tell."""
        if self.alive():
            self.process.kill()
            self.process.wait(STOP_TIMEOUT_S)
        return self._closed()

    def _closed(self) -> int:
        if self.stopped_at is None:
            self.stopped_at = time.monotonic()
            self.http.close()
        code = self.process.returncode
        assert code is not None
        return code

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def log(self) -> str:
        return f"--- stdout ---\n{self.stdout()}\n--- stderr ---\n{self.stderr()}"


def start_server(
    root: Path,
    name: str,
    *,
    data_dir: Path | None = None,
    admin_key: str | None = "",
    workers: int | None = None,
    config: str | None = None,
    env: dict[str, str] | None = None,
    wait_healthy: bool = True,
    extra_args: tuple[str, ...] = (),
    https_ca: str | None = None,
) -> GengateServer:
    """Start `gengate serve` on a free loopback port and wait for `/healthz`.

    `https_ca`: the server speaks HTTPS (its certificate given in `extra_args` or `env`), and
    the clients here trust this CA file.

    `admin_key=""` picks a random admin key passed in `GENGATE_ADMIN_KEY`; `None` passes none,
    so the server makes (or reuses) the one in its data folder: read it from `admin_key` there.
    """
    workdir = root / f"{name}-{secrets.token_hex(3)}"
    workdir.mkdir(parents=True)
    data_dir = data_dir if data_dir is not None else workdir / "data"
    admin = admin_key if admin_key != "" else "adm_" + secrets.token_urlsafe(16)
    full_env = {**_clean_env(), **(env or {})}
    if admin is not None:
        full_env["GENGATE_ADMIN_KEY"] = admin
    extra: list[str] = list(extra_args)
    if workers is not None:
        extra += ["--workers", str(workers)]
    if config is not None:
        config_path = workdir / "gengate.toml"
        config_path.write_text(config)
        extra += ["--config", str(config_path)]
    last_error = ""
    for attempt in range(3):  # another process may take the free port before we bind it
        port = free_port()
        args = [
            str(GENGATE),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            *extra,
        ]
        stdout_path = workdir / f"stdout.{attempt}.log"
        stderr_path = workdir / f"stderr.{attempt}.log"
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            process = subprocess.Popen(args, cwd=workdir, env=full_env, stdout=out, stderr=err)
        base_url = f"{'https' if https_ca else 'http'}://127.0.0.1:{port}"
        server = GengateServer(
            name=name,
            base_url=base_url,
            port=port,
            admin_key=admin or "",
            data_dir=data_dir,
            workdir=workdir,
            process=process,
            stdout_path=stdout_path,
            stderr_path=stderr_path,
            http=httpx.Client(
                base_url=base_url,
                timeout=15.0,
                event_hooks={"response": [_check_trace_id]},
                verify=_verify(https_ca),
            ),
            args=args,
            env=full_env,
        )
        _SERVERS.append(server)
        if not wait_healthy:
            return server
        if _wait_healthy(server, https_ca):
            if admin is None:
                key_file = data_dir / "admin_key"
                server.admin_key = key_file.read_text().strip() if key_file.is_file() else ""
            return server
        server.kill()
        last_error = server.log()
        if "address already in use" not in last_error.lower():
            break
    pytest.fail(f"gengate serve ({name}) did not become healthy:\n{last_error}")


def _verify(https_ca: str | None) -> ssl.SSLContext | bool:
    """What httpx checks a server's certificate against: the test's CA, or the system's."""
    return ssl.create_default_context(cafile=https_ca) if https_ca else True


def _wait_healthy(server: GengateServer, https_ca: str | None = None) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    with httpx.Client(timeout=2.0, verify=_verify(https_ca)) as probe:
        while time.monotonic() < deadline:
            if not server.alive():
                return False
            with contextlib.suppress(httpx.TransportError):
                response = probe.get(server.base_url + "/healthz")
                if response.status_code == 200:
                    return True
            time.sleep(POLL_S)
    return False


def clean_exit(code: int, log: str) -> bool:
    """Uvicorn re-raises the SIGTERM it handled once shut down, so -15 is a clean exit too."""
    return code in (0, -signal.SIGTERM) and "Application shutdown complete" in log


class Launcher:
    """Starts servers and stops every one of them on `close()`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.servers: list[GengateServer] = []

    def __call__(self, name: str = "extra", **options: Any) -> GengateServer:
        server = start_server(self.root, name, **options)
        self.servers.append(server)
        return server

    def close(self) -> None:
        for server in self.servers:
            server.stop()


# -- fixtures ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def gengate_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GengateServer]:
    """The shared server: default settings, the demo models and `slow` (timeout 0.5 s)."""
    server = start_server(tmp_path_factory.mktemp("gengate-default"), "default", config=DEFAULT_CONFIG)
    yield server
    code = server.stop()
    log = server.log()
    assert clean_exit(code, log), f"the default server did not shut down cleanly ({code}):\n{log}"
    assert "Traceback" not in log, f"the default server logged an unexpected error:\n{log}"


@pytest.fixture(scope="session")
def api_key(gengate_server: GengateServer) -> str:
    """An unrestricted API key on the shared server."""
    key: str = gengate_server.create_key("e2e-default")["key"]
    return key


@pytest.fixture
def start_gengate(tmp_path: Path) -> Iterator[Launcher]:
    """Start servers with other settings for one test: `start_gengate("name", env={...})`."""
    launcher = Launcher(tmp_path)
    yield launcher
    launcher.close()


@pytest.fixture(scope="module")
def start_gengate_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    """Like `start_gengate`, for servers one module shares."""
    launcher = Launcher(tmp_path_factory.mktemp("gengate-module"))
    yield launcher
    launcher.close()


@pytest.fixture(scope="session")
def short_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GengateServer]:
    """A second shared server: result URLs live 1 s after completion, `sync` waits at most 1 s."""
    server = start_server(
        tmp_path_factory.mktemp("gengate-short"),
        "short",
        env={"GENGATE_RESULT_TTL": "1", "GENGATE_SYNC_WAIT": "1"},
    )
    yield server
    server.stop()


@pytest.fixture
def assert_error() -> Callable[..., dict[str, Any]]:
    return check_error


def check_error(
    response: httpx.Response, status: int, code: str, *, mentions: str | None = None
) -> dict[str, Any]:
    """The APIXO error envelope: HTTP status == `code`, `error.code`, `data` null, and a
    `trace_id` equal to the `X-Trace-Id` header. `mentions` must appear in the message."""
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = json.loads(response.content)
    assert body["code"] == status, body
    assert body["data"] is None, body
    assert isinstance(body["message"], str), body
    assert body["message"], body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str), body
    assert body["error"]["message"], body
    assert isinstance(body["trace_id"], str), body
    assert body["trace_id"], body
    assert body["trace_id"] == response.headers["x-trace-id"], (body, dict(response.headers))
    if mentions is not None:
        assert mentions.lower() in body["error"]["message"].lower(), body
    return body


# -- attaching server logs to failures ---------------------------------------------------
@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    item.stash[_START_KEY] = time.monotonic()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report = yield
    if report.failed:
        began = item.stash.get(_START_KEY, 0.0)
        for server in _SERVERS:
            if server.stopped_at is None or server.stopped_at >= began:
                text = server.log()
                if len(text) > LOG_TAIL_CHARS:
                    text = "…" + text[-LOG_TAIL_CHARS:]
                report.sections.append((f"gengate log: {server.name} ({server.base_url})", text))
    return report
