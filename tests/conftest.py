"""Fixtures shared by the in-process layers: settings in a temp folder, a running gateway."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import settings as hypothesis_settings

import pgcluster
from gengate.runtime import Gateway
from gengate.settings import Settings, load_settings
from gengate.store.postgres import PostgresStore
from gengate.store.sqlite import SQLiteStore

ADMIN_KEY = "gga_test_admin_key"

# Examples are checked for what they answer, never for how fast: on a busy 2-core machine a
# per-example deadline only makes a correct test fail now and then.
hypothesis_settings.register_profile("gengate", deadline=None)
hypothesis_settings.load_profile("gengate")


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(__import__("os").environ):
        if name.startswith("GENGATE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return load_settings(data_dir=tmp_path / "data", admin_key=ADMIN_KEY, lease_s=2.0)


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[Gateway]:
    gateway = Gateway(settings)
    async with gateway.running():
        yield gateway


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=gateway.asgi())
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        yield client


@pytest.fixture
async def api_key(gateway: Gateway) -> str:
    _key, secret = await gateway.keys.create("test")
    return secret


@pytest.fixture
async def idle(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, str, Gateway]]:
    """A gateway without workers: its tasks stay pending until canceled."""
    gateway = Gateway(settings.model_copy(update={"workers": 0}))
    async with gateway.running():
        _key, secret = await gateway.keys.create("idle")
        transport = httpx.ASGITransport(app=gateway.asgi())
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
            yield http, secret, gateway


# -- PostgreSQL (tests/pgcluster.py): a real server the tests start --------------------------------
def _under_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"true", "1", "yes"}


def _postgres_bindir() -> Path:
    """The server binaries; without them the test is skipped, or fails under `CI=true`, where the
    PostgreSQL tests may never be skipped."""
    try:
        return pgcluster.require_bindir()
    except pgcluster.PostgresMissing as exc:
        if _under_ci():
            pytest.fail(f"CI=true and {exc}", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pgcluster.PgCluster]:
    """One PostgreSQL cluster for the whole session (fsync on), with a `gengate` database."""
    with pgcluster.running_cluster(bindir=_postgres_bindir()) as cluster:
        cluster.create_database("gengate")
        yield cluster


@pytest.fixture
def pg_url(pg_server: pgcluster.PgCluster) -> Iterator[str]:
    """`postgresql://postgres@127.0.0.1:PORT/t_...`: a fresh empty database for this test only."""
    if not pg_server.is_running():  # a test that stopped the shared server and failed to restart it
        pg_server.start()
    name = pg_server.fresh_database()
    yield pg_server.url(name)
    if pg_server.is_running():
        pg_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SQLiteStore | PostgresStore]:
    """The store under test, once per backend: SQLite in a temp folder, and a real PostgreSQL
    (a module or folder with a `store` of its own overrides it)."""
    opened: SQLiteStore | PostgresStore
    if request.param == "sqlite":
        opened = SQLiteStore(tmp_path / "db.sqlite")
    else:
        opened = PostgresStore(request.getfixturevalue("pg_url"))
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
def own_pg_server() -> Iterator[pgcluster.PgCluster]:
    """A cluster of this test's own, with a `gengate` database: for tests that stop, restart or
    crash the server (`stop`, `restart`, `down()`) without disturbing the shared one."""
    with pgcluster.running_cluster(bindir=_postgres_bindir()) as cluster:
        cluster.create_database("gengate")
        yield cluster
