"""One key's rate limit held over two `gengate serve` processes that share a real Redis.

`redis-server` is started by the test on a free loopback port (`scripts/ensure-services.sh`
installs it). Both gateways serve the same data folder, so a key made on one works on the
other, and their windows live in the one Redis: what one process counted, the other sees.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

pytestmark = pytest.mark.e2e

START_TIMEOUT_S = 20.0


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A redis-server of this test's own on loopback, with nothing persisted."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is missing: run scripts/ensure-services.sh (make test does)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = (tmp_path / "redis.log").open("wb")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start: {(tmp_path / 'redis.log').read_text()}")
            time.sleep(0.05)
    yield url
    client.close()
    process.terminate()
    process.wait(10)
    log.close()


def test_two_api_processes_share_one_limit(start_gengate: Any, redis_url: str, tmp_path: Path) -> None:
    env = {"GENGATE_RATE_LIMIT_STORAGE": redis_url}
    data_dir = tmp_path / "shared-data"
    first = start_gengate("api-1", data_dir=data_dir, env=env)
    second = start_gengate("api-2", data_dir=data_dir, env=env, admin_key=first.admin_key, workers=0)
    key = first.create_key("shared", rate_limit="4/minute")["key"]

    seen = []
    for server in (first, second, first, second):
        response = server.http.get("/api/v1/models", headers=server.auth(key))
        assert response.status_code == 200, response.text
        seen.append(response.headers["x-ratelimit-remaining"])
    assert seen == ["3", "2", "1", "0"]  # one window, counted by both

    for server in (first, second):
        refused = server.http.get("/api/v1/models", headers=server.auth(key))
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "too_many_requests"
        assert int(refused.headers["retry-after"]) >= 1
    # The windows are in Redis, under gengate's own prefix.
    keys = redis.Redis.from_url(redis_url).keys("gengate*")
    assert keys, "no rate-limit window in Redis"
    # Another key has its own window on both.
    other = second.create_key("other", rate_limit="4/minute")["key"]
    assert first.http.get("/api/v1/models", headers=first.auth(other)).status_code == 200
