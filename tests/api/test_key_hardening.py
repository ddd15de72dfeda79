"""Keys: every wrong shape of a key gets the same answer by the same path, and the database
holds no secret, only hashes and display prefixes."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from gengate.domain.clock import now_ms
from gengate.domain.keys import KeyChanges
from gengate.runtime import Gateway

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def wrong_shapes(secret: str) -> dict[str, str]:
    return {
        "wrong": "gg_" + "A" * (len(secret) - 3),
        "truncated": secret[:-1],
        "right prefix, wrong secret": secret[:12] + "x" * (len(secret) - 12),
        "one character changed": secret[:-1] + ("a" if secret[-1] != "a" else "b"),
        "prefix only": secret[:9],
        "no gg_ prefix": secret[3:],
        "much longer": secret + "x" * 4000,
        "not ASCII": secret[:-1] + "é",
        "admin-looking": "gga_" + secret[3:],
    }


def without_trace(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    body.pop("trace_id")
    return body


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/statusTask/demo-echo?taskId=task_x"),  # the hot path
        ("POST", "/api/v1/generateTask/demo-echo"),
        ("GET", "/api/v1/account"),
    ],
)
async def test_every_wrong_shape_gets_the_same_401_by_one_hash_lookup(
    gateway: Gateway,
    http: httpx.AsyncClient,
    api_key: str,
    monkeypatch: pytest.MonkeyPatch,
    *,
    method: str,
    path: str,
) -> None:
    lookups: list[str] = []
    real = gateway.store.get_key_by_hash

    async def counted(key_hash: str) -> Any:
        lookups.append(key_hash)
        return await real(key_hash)

    monkeypatch.setattr(gateway.store, "get_key_by_hash", counted)
    bodies = []
    for shape, token in wrong_shapes(api_key).items():
        gateway.keys._cache.clear()
        lookups.clear()
        response = await http.request(
            method, path, headers={"Authorization": f"Bearer {token}".encode()}, json={"input": {}}
        )
        assert response.status_code == 401, (shape, response.text)
        bodies.append(without_trace(response))
        assert len(lookups) == 1, shape  # hashed and looked up, whatever its shape
        assert SHA256_HEX.match(lookups[0]), shape
    assert all(body == bodies[0] for body in bodies)
    assert bodies[0]["error"] == {
        "code": "invalid_token",
        "message": "The specified token is invalid or wrong.",
    }


async def test_disabled_and_expired_keys_say_so_only_to_their_holder(
    gateway: Gateway, http: httpx.AsyncClient
) -> None:
    """`disabled` and `token_expired` (seed 003) answer only the exact key: no guess learns
    anything from them."""
    key, secret = await gateway.keys.create("soon gone")
    auth = {"Authorization": f"Bearer {secret}"}
    await gateway.keys.update(key.id, KeyChanges(disabled=True))
    response = await http.get("/api/v1/account", headers=auth)
    assert (response.status_code, response.json()["error"]["code"]) == (403, "disabled")
    await gateway.keys.update(key.id, KeyChanges(disabled=False, expires_at=now_ms() - 1))
    response = await http.get("/api/v1/account", headers=auth)
    assert (response.status_code, response.json()["error"]["code"]) == (401, "token_expired")
    wrong = await http.get("/api/v1/account", headers={"Authorization": f"Bearer {secret[:-1]}"})
    assert wrong.json()["error"]["code"] == "invalid_token"


async def test_a_database_dump_holds_only_hashes_and_prefixes(
    gateway: Gateway, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    created = await http.post(
        "/admin/v1/keys",
        json={"name": "dumped", "credits": 5},
        headers={"Authorization": "Bearer gga_test_admin_key"},
    )
    data = created.json()["data"]
    secret, prefix = data["key"], data["prefix"]
    auth = {"Authorization": f"Bearer {secret}"}
    whsec = (await http.get("/api/v1/account", headers=auth)).json()["data"]["webhook_secret"]
    for request_type in ("sync", "async"):
        await http.post(
            "/api/v1/generateTask/demo-echo",
            json={"request_type": request_type, "input": {"prompt": "dump me"}},
            headers={**auth, "Idempotency-Key": f"dump-{request_type}"},
        )
    await http.post("/api/v1/account/rotateWebhookSecret", headers=auth)
    stored = await gateway.store.get_key(data["id"])
    assert stored is not None

    db = gateway.settings.sqlite_path
    with sqlite3.connect(db) as conn:
        dump = "\n".join(conn.iterdump())
    raw = b"".join(path.read_bytes() for path in db.parent.glob(db.name + "*"))
    secret_part = secret[len(prefix) :]  # what the display prefix does not show
    for haystack in (dump, raw.decode("latin-1")):
        assert secret not in haystack
        assert whsec not in haystack
        assert whsec.removeprefix("whsec_") not in haystack
        # Not even a piece of the hidden part of the key.
        assert not any(secret_part[i : i + 12] in haystack for i in range(len(secret_part) - 11))
    assert stored.key_hash in dump
    assert prefix in dump
