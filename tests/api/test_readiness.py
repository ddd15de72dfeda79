"""`/readyz` reflects the disk: not ready while a folder the gateway writes to has less than
`min_free_bytes` free, nor while store writes fail for their storage (a full database here,
made real by SQLite's own page cap) and none has succeeded since."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gengate.api.disk_space import DiskSpace
from gengate.runtime import Gateway
from gengate.settings import Settings
from gengate.store.sqlite import SQLiteStore

Served = tuple[httpx.AsyncClient, str, Gateway]


@pytest.fixture
async def served(settings: Settings, request: pytest.FixtureRequest) -> AsyncIterator[Served]:
    overrides: dict[str, Any] = getattr(request, "param", {})
    gateway = Gateway(settings.model_copy(update={"workers": 0, **overrides}))
    async with gateway.running():
        _key, secret = await gateway.keys.create("ready")
        transport = httpx.ASGITransport(app=gateway.asgi())
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
            yield http, secret, gateway


async def readyz(http: httpx.AsyncClient) -> tuple[int, dict[str, Any]]:
    response = await http.get("/readyz")
    body: dict[str, Any] = response.json()
    return response.status_code, body


async def submit(http: httpx.AsyncClient, key: str) -> httpx.Response:
    body = {"input": {"mode": "echo", "prompt": "p" * 2000}}
    return await http.post(
        "/api/v1/generateTask/demo-echo", json=body, headers={"Authorization": f"Bearer {key}"}
    )


async def test_readyz_names_every_check(served: Served) -> None:
    http, _key, _gateway = served
    status, body = await readyz(http)
    assert status == 200, body
    assert (body["status"], body["store"], body["writes"], body["disk"]) == ("ready", "ok", "ok", "ok")
    assert set(body["freeBytes"]) == {"data", "files"}
    assert all(isinstance(free, int) and free > 0 for free in body["freeBytes"].values())
    assert "circuits" in body


@pytest.mark.parametrize("served", [{"min_free_bytes": 2**62}], indirect=True)
async def test_not_ready_while_a_folder_has_less_free_space_than_the_minimum(served: Served) -> None:
    """No disk here has 4 EiB free: the real free space is below the minimum."""
    http, key, _gateway = served
    status, body = await readyz(http)
    assert status == 503, body
    assert (body["error"]["code"], body["disk"], body["store"]) == ("unavailable", "low", "ok")
    message = body["error"]["message"]
    assert "the data folder has" in message, message
    assert "the files folder has" in message, message
    assert f"less than GENGATE_MIN_FREE_BYTES ({2**62})" in message, message
    assert body["freeBytes"]["data"] < 2**62
    # Readiness is advice to a balancer: the gateway itself still takes what it can.
    assert (await submit(http, key)).status_code == 200


@pytest.mark.parametrize("served", [{"min_free_bytes": 0}], indirect=True)
async def test_a_minimum_of_zero_checks_no_space(served: Served) -> None:
    http, _key, _gateway = served
    status, body = await readyz(http)
    assert (status, body["disk"]) == (200, "ok"), body


async def _set_page_cap(store: SQLiteStore, pages: int | None) -> None:
    """Cap the database at its size now (None: lift the cap), on the writer's own connection."""

    def cap(conn: sqlite3.Connection) -> None:
        limit = pages if pages is not None else conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {int(limit)}")

    await store.driver.writer.submit(cap)


async def test_not_ready_while_writes_fail_for_a_full_database(served: Served) -> None:
    http, key, gateway = served
    assert isinstance(gateway.store, SQLiteStore)
    await _set_page_cap(gateway.store, None)
    for _attempt in range(1000):  # the pages the database has fill up after a few submits
        response = await submit(http, key)
        if response.status_code != 200:
            break
    assert response.status_code == 503, response.text
    status, body = await readyz(http)
    assert status == 503, body
    assert (body["writes"], body["store"]) == ("failing", "ok"), body
    assert "a store write failed" in body["error"]["message"], body
    assert "database or disk is full" in body["error"]["message"], body

    await _set_page_cap(gateway.store, 1 << 30)
    status, body = await readyz(http)  # room again, but no write has shown it yet
    assert (status, body["writes"]) == (503, "failing"), body
    assert (await submit(http, key)).status_code == 200
    status, body = await readyz(http)
    assert (status, body["writes"]) == (200, "ok"), body


def test_free_space_is_read_at_most_once_a_second(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    reads: list[Path] = []
    real = shutil.disk_usage

    def counting(path: Path) -> Any:
        reads.append(Path(path))
        return real(path)

    monkeypatch.setattr(shutil, "disk_usage", counting)
    now = [100.0]
    space = DiskSpace({"data": tmp_path / "not" / "made" / "yet"}, 1, clock=lambda: now[0])
    assert space.low() == {}
    now[0] += 0.5
    space.free()
    assert reads == [tmp_path]  # the nearest folder that exists, read once
    now[0] += 0.6
    space.free()
    assert len(reads) == 2
