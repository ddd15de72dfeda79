"""The official `fal-client`, unmodified, against a real `gengate serve` over HTTPS.

fal-client reads `FAL_QUEUE_RUN_HOST` when it is imported and always speaks https, so each
scenario runs in a fresh Python process with `FAL_QUEUE_RUN_HOST=127.0.0.1:<port>/fal`,
`FAL_KEY`, and `SSL_CERT_FILE` naming the test's CA (httpx, under fal-client, honours it).
The script prints what the client returned as JSON; every file it names is downloaded here
and checked to be the right file.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from standardwebhooks import Webhook
from test_e2e_https import Tls, make_tls

pytestmark = pytest.mark.e2e

APP = "gengate/demo-image"

#: The client calls of the issue, in one process: submit, status with logs, get, result by id,
#: subscribe, sub-path submit, cancel, a failing request, an unknown app, the async client.
SCRIPT = r"""
import asyncio, json, sys
import fal_client
from fal_client.client import FalClientHTTPError

app, echo_id = sys.argv[1], sys.argv[2]
out = {}
arguments = {"prompt": "fal e2e", "width": 80, "height": 48, "seed": 5, "duration_ms": 300}
handle = fal_client.submit(app, arguments)
out["request_id"] = handle.request_id
out["events"] = [type(s).__name__ for s in handle.iter_events(with_logs=True, interval=0.05)]
final = handle.status(with_logs=True)
out["final"] = {
    "type": type(final).__name__, "logs": final.logs, "metrics": final.metrics, "error": final.error
}
out["get"] = handle.get()
out["result_by_id"] = fal_client.result(app, handle.request_id)
out["status_by_id"] = type(fal_client.status(app, handle.request_id, with_logs=True)).__name__

updates = []
out["subscribe"] = fal_client.subscribe(
    app, {"prompt": "subscribed", "width": 64, "height": 96, "duration_ms": 200}, with_logs=True,
    on_queue_update=lambda status: updates.append(type(status).__name__),
)
out["updates"] = updates

sub = fal_client.submit(app, {"prompt": "sub path", "width": 40, "height": 40}, path="text-to-image")
out["sub_path"] = fal_client.result(app + "/text-to-image", sub.request_id)

slow = fal_client.submit(app, {"prompt": "slow", "duration_ms": 60000}, priority="low")
fal_client.cancel(app, slow.request_id)
canceled = list(slow.iter_events(interval=0.05))[-1]  # a running request stops with its worker
out["canceled"] = {"type": type(canceled).__name__, "error_type": canceled.error_type}
try:
    slow.get()
except FalClientHTTPError as exc:
    out["canceled_get"] = [exc.status_code, exc.error_type]

failing = fal_client.submit(app, {"prompt": "no", "fail_code": "CONTENT_VIOLATION"})
try:
    failing.get()
except FalClientHTTPError as exc:
    out["failed_get"] = [exc.status_code, exc.error_type, str(exc)]

try:
    fal_client.submit("gengate/no-such-model", {"prompt": "x"})
except FalClientHTTPError as exc:
    out["unknown"] = [exc.status_code, exc.error_type, str(exc)]

out["echo"] = fal_client.result("gengate/demo-echo", echo_id)

async def main():
    handle = await fal_client.submit_async(app, {"prompt": "async", "width": 56, "height": 56})
    result = await handle.get()
    status = await fal_client.status_async(app, handle.request_id, with_logs=True)
    return {"result": result, "status": type(status).__name__}

out["async"] = asyncio.run(main())
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return make_tls(tmp_path_factory.mktemp("fal-tls"))


@pytest.fixture(scope="module")
def fal_server(start_gengate_module: Any, tls: Tls) -> Any:
    return start_gengate_module(
        "fal", extra_args=tls.flags(), https_ca=tls.ca, env={"GENGATE_WEBHOOK_ALLOW": "127.0.0.0/8"}
    )


def fal_env(server: Any, tls: Tls, key: str, home: Path) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("FAL_", "GENGATE_")) and name.lower() not in {"https_proxy", "all_proxy"}
    }
    host = f"127.0.0.1:{server.port}/fal"
    return {
        **env,
        "FAL_KEY": key,
        "FAL_QUEUE_RUN_HOST": host,
        "FAL_RUN_HOST": host,
        "FAL_HOME_DIR": str(home),
        "SSL_CERT_FILE": tls.ca,
        "NO_PROXY": "127.0.0.1",
    }


def run_client(server: Any, tls: Tls, key: str, home: Path, script: str, *args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=fal_env(server, tls, key, home),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def check_image(server: Any, image: dict[str, Any], size: tuple[int, int]) -> None:
    """The URL is https on this server, and what it serves is a PNG of the size the result says."""
    assert image["url"].startswith(f"https://127.0.0.1:{server.port}/files/"), image
    download = server.http.get(image["url"])
    assert download.status_code == 200
    assert download.headers["content-type"] == image["content_type"] == "image/png"
    assert len(download.content) == image["file_size"]
    picture = Image.open(io.BytesIO(download.content))
    picture.load()
    assert picture.size == size == (image["width"], image["height"])


def test_the_official_fal_client(fal_server: Any, tls: Tls, tmp_path: Path) -> None:
    key = fal_server.create_key("fal")["key"]
    echo_id = fal_server.submit_ok(key, "demo-echo", {"data": {"from": "apixo"}})
    fal_server.wait_task(key, "demo-echo", echo_id)
    out = run_client(fal_server, tls, key, tmp_path, SCRIPT, APP, echo_id)

    assert out["events"][-1] == "Completed"
    assert set(out["events"]) <= {"Queued", "InProgress", "Completed"}
    final = out["final"]
    assert (final["type"], final["error"]) == ("Completed", None)
    assert final["metrics"]["inference_time"] > 0
    messages = [entry["message"] for entry in final["logs"]]
    assert any("seed 5" in message for message in messages), messages
    assert out["get"] == out["result_by_id"]
    assert out["get"]["seed"] == 5
    [image] = out["get"]["images"]
    check_image(fal_server, image, (80, 48))
    assert out["status_by_id"] == "Completed"

    [subscribed] = out["subscribe"]["images"]
    check_image(fal_server, subscribed, (64, 96))
    assert out["updates"][-1] == "Completed"
    [sub_path] = out["sub_path"]["images"]
    check_image(fal_server, sub_path, (40, 40))
    [async_image] = out["async"]["result"]["images"]
    check_image(fal_server, async_image, (56, 56))
    assert out["async"]["status"] == "Completed"

    assert out["canceled"] == {"type": "Completed", "error_type": "CANCELED"}
    assert out["canceled_get"] == [400, "CANCELED"]
    assert out["failed_get"][:2] == [422, "CONTENT_VIOLATION"]
    assert out["unknown"][:2] == [404, "model_not_found"]
    assert "gengate/no-such-model" in out["unknown"][2]

    [echoed] = out["echo"]["files"]
    assert json.loads(fal_server.http.get(echoed["url"]).content)["data"] == {"from": "apixo"}

    # The request made through fal reads through APIXO, with the same file.
    data = fal_server.wait_task(key, "demo-image", out["request_id"])
    assert json.loads(data["resultJson"])["resultUrls"] == [image["url"]]


# -- webhooks ----------------------------------------------------------------------------------
class _Hooks(ThreadingHTTPServer):
    arrivals: list[tuple[dict[str, str], bytes]]
    arrived: threading.Event


class _HookHandler(BaseHTTPRequestHandler):
    server: _Hooks

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self.server.arrivals.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.server.arrived.set()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def hooks() -> Iterator[_Hooks]:
    server = _Hooks(("127.0.0.1", 0), _HookHandler)
    server.arrivals, server.arrived = [], threading.Event()
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


WEBHOOK_SCRIPT = r"""
import json, sys
import fal_client
arguments = {"prompt": "hooked", "width": 32, "height": 32}
handle = fal_client.submit(sys.argv[1], arguments, webhook_url=sys.argv[2])
print(json.dumps({"request_id": handle.request_id}))
"""


def test_fal_webhook_is_signed_and_carries_the_result(
    fal_server: Any, tls: Tls, tmp_path: Path, hooks: _Hooks
) -> None:
    key = fal_server.create_key("fal-hook")["key"]
    url = f"http://127.0.0.1:{hooks.server_address[1]}/hook"
    request_id = run_client(fal_server, tls, key, tmp_path, WEBHOOK_SCRIPT, APP, url)["request_id"]
    assert hooks.arrived.wait(20), "no webhook arrived"
    headers, body = hooks.arrivals[0]
    account = fal_server.http.get("/api/v1/account", headers=fal_server.auth(key))
    sent = Webhook(account.json()["data"]["webhook_secret"]).verify(body, headers)
    assert (sent["request_id"], sent["gateway_request_id"], sent["status"]) == (request_id, request_id, "OK")
    assert sent["error"] is None
    [image] = sent["payload"]["images"]
    check_image(fal_server, image, (32, 32))
