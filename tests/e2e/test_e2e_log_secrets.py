"""No key or callback secret ever appears in a log line of a real `gengate serve`.

The server logs at debug level (every library's lines included) while it is driven with keys
right and wrong, admin calls, a webhook secret fetched and rotated, and a signed callback to a
URL with a token in it; then its whole output is searched for each secret.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from recording_http import RecordingServer, recording_receiver

pytestmark = pytest.mark.e2e

CALLBACK_TOKEN = "cbtok_9f8e7d6c5b4a39281706"
#: Parameter names that carried secrets in clear into the log (issue 19), each with its value.
CALLBACK_SECRETS = {
    name: f"v{i}cbsecret{i}"
    for i, name in enumerate(
        ("client_secret", "X-Amz-Signature", "access_key", "code", "session", "hmac", "pwd", "Client_Secret")
    )
}


@pytest.fixture
def receiver() -> Iterator[RecordingServer]:
    with recording_receiver() as server:
        yield server


def test_no_secret_reaches_the_log(start_gengate: Any, receiver: RecordingServer) -> None:
    server = start_gengate(
        "log-secrets",
        env={"GENGATE_LOG_LEVEL": "debug", "GENGATE_WEBHOOK_ALLOW": "127.0.0.0/8"},
    )
    created = server.create_key("logged", credits=10)
    key = created["key"]
    whsec = server.http.get("/api/v1/account", headers=server.auth(key)).json()["data"]["webhook_secret"]
    rotated = server.http.post("/api/v1/account/rotateWebhookSecret", headers=server.auth(key))
    whsec_new = rotated.json()["data"]["webhook_secret"]

    port = receiver.port
    params = "&".join(f"{name}={value}" for name, value in CALLBACK_SECRETS.items())
    callback = f"http://127.0.0.1:{port}/hook?token={CALLBACK_TOKEN}&{params}"
    server.submit_ok(key, "demo-echo", {"prompt": "hi"}, request_type="callback", callback_url=callback)
    receiver.first(timeout_s=20)
    # Wrong keys of every shape, a key in a query string, an admin call with a user's key.
    for token in (key[:-1], key + "x", key[:12] + "x" * 31, server.admin_key[:-1]):
        assert server.http.get("/api/v1/account", headers=server.auth(token)).status_code == 401
    server.http.get(f"/api/v1/statusTask/demo-echo?taskId={key}", headers=server.auth(key))
    assert server.http.get("/admin/v1/keys", headers=server.auth(key)).status_code == 401
    server.http.post("/api/v1/generateTask/demo-echo", content=b"{" * 5000, headers=server.auth(key))

    server.stop()
    log = server.stdout() + server.stderr()
    assert "HTTP Request: POST http://127.0.0.1" in log, "the callback's request was not logged at all"
    hidden = key[len(created["prefix"]) :]
    for name, secret in (
        ("API key", key),
        ("the hidden part of the API key", hidden),
        ("admin key", server.admin_key),
        ("webhook secret", whsec),
        ("rotated webhook secret", whsec_new),
        ("webhook secret body", whsec.removeprefix("whsec_")),
        ("callback token", CALLBACK_TOKEN),
        *((f"callback parameter {name}", value) for name, value in CALLBACK_SECRETS.items()),
    ):
        assert secret not in log, f"the {name} appears in the log"
    assert not any(hidden[i : i + 12] in log for i in range(len(hidden) - 11)), "a piece of the key is logged"


def test_at_info_a_callback_url_is_logged_without_its_query(
    start_gengate: Any, receiver: RecordingServer
) -> None:
    server = start_gengate("log-callback-query", env={"GENGATE_WEBHOOK_ALLOW": "127.0.0.0/8"})
    key = server.create_key("logged", credits=10)["key"]
    port = receiver.port
    query = "&".join(f"{name}={value}" for name, value in CALLBACK_SECRETS.items())
    server.submit_ok(
        key,
        "demo-echo",
        {"prompt": "hi"},
        request_type="callback",
        callback_url=f"http://127.0.0.1:{port}/hook/in?{query}&page=2",
    )
    receiver.first(timeout_s=20)
    assert receiver.arrived[0].path.endswith("&page=2"), "the receiver got the whole URL"
    server.stop()
    log = server.stdout() + server.stderr()
    assert f"HTTP Request: POST http://127.0.0.1:{port}/hook/in?[9 params] " in log
    assert "page=2" not in log
    for name, value in CALLBACK_SECRETS.items():
        assert value not in log, f"the callback parameter {name} appears in the log"
