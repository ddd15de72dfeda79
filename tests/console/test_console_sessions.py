"""Console sessions over a real SQLite store and the real key service: they expire, end with
their key (disabled, or the admin key replaced), are seen by every process sharing the store,
and failed sign-ins are counted per address."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gengate.console.sessions import SessionService
from gengate.domain.errors import InvalidToken, TooManyRequests
from gengate.domain.keys import KeyChanges
from gengate.runtime import Gateway
from gengate.services.keys import KeyService
from gengate.services.ratelimit import RateLimiter
from gengate.store.sqlite import SQLiteStore

ADMIN = "adm_console_sessions_test"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "db.sqlite")
    await opened.open()
    yield opened
    await opened.close()


def service(
    store: SQLiteStore, *, admin: str = ADMIN, ttl_s: float = 60.0, limit: str = "3/minute"
) -> SessionService:
    keys = KeyService(store, admin, server_secret=b"s" * 32, cache_ttl_s=0)
    return SessionService(store, keys, RateLimiter(), ttl_s=ttl_s, signin_limit=limit)


async def test_a_session_expires(store: SQLiteStore) -> None:
    sessions = service(store, ttl_s=0.2)
    _key, secret = await sessions.keys.create("k")
    cookie, viewer = await sessions.sign_in(secret, "127.0.0.1")
    assert not viewer.is_admin
    assert secret not in cookie
    assert (await sessions.viewer(cookie)) is not None
    await asyncio.sleep(0.3)
    assert await sessions.viewer(cookie) is None


async def test_a_disabled_key_ends_its_sessions(store: SQLiteStore) -> None:
    sessions = service(store)
    key, secret = await sessions.keys.create("k")
    cookie, _viewer = await sessions.sign_in(secret, "127.0.0.1")
    await sessions.keys.update(key.id, KeyChanges(disabled=True))
    assert await sessions.viewer(cookie) is None
    await sessions.keys.update(key.id, KeyChanges(disabled=False))
    assert await sessions.viewer(cookie) is None  # ended, not paused


async def test_a_new_admin_key_ends_the_old_ones_sessions(store: SQLiteStore) -> None:
    cookie, viewer = await service(store).sign_in(ADMIN, "127.0.0.1")
    assert viewer.is_admin
    assert await service(store).viewer(cookie) is not None
    assert await service(store, admin="adm_another_one").viewer(cookie) is None


async def test_every_process_on_the_store_sees_a_session_and_its_end(
    store: SQLiteStore, tmp_path: Path
) -> None:
    other = SQLiteStore(tmp_path / "db.sqlite")  # a second process, as far as the database can tell
    await other.open()
    try:
        here, there = service(store), service(other)
        _key, secret = await here.keys.create("k")
        cookie, viewer = await here.sign_in(secret, "127.0.0.1")
        seen = await there.viewer(cookie)
        assert seen is not None
        assert seen.csrf == viewer.csrf
        await there.sign_out(seen)
        assert await here.viewer(cookie) is None
    finally:
        await other.close()


async def test_failed_sign_ins_are_limited_per_address(store: SQLiteStore) -> None:
    sessions = service(store, limit="3/minute")
    _key, secret = await sessions.keys.create("k")
    for attempt in range(3):
        with pytest.raises(InvalidToken):
            await sessions.sign_in(f"wrong-{attempt}", "client-a")
    with pytest.raises(TooManyRequests):
        await sessions.sign_in(secret, "client-a")
    cookie, _viewer = await sessions.sign_in(secret, "client-b")  # another address is not held back
    assert await sessions.viewer(cookie) is not None
    for _ in range(5):  # successes count for nothing
        await sessions.sign_in(secret, "client-c")


async def test_the_cookie_is_secure_under_https(gateway: Gateway) -> None:
    key, secret = await gateway.keys.create("tls")
    transport = httpx.ASGITransport(app=gateway.asgi())
    async with httpx.AsyncClient(transport=transport, base_url="https://gateway.test") as client:
        response = await client.post("/console/signin", data={"key": secret})
    assert response.status_code == 303
    cookie = response.headers["set-cookie"].lower()
    assert "; secure" in cookie
    assert "httponly" in cookie
    assert key.id not in cookie
