"""The PostgreSQL the tests start (tests/pgcluster.py and the fixtures in tests/conftest.py):
a real server that answers, a fresh database per test, restarts and crashes that keep what was
committed, and the rule that under `CI=true` a missing PostgreSQL fails instead of skipping."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

import pgcluster

TESTS = Path(__file__).resolve().parent


async def test_server_answers_a_query(pg_url: str, pg_server: pgcluster.PgCluster) -> None:
    assert pg_url.startswith(f"postgresql://postgres@127.0.0.1:{pg_server.port}/t_")
    conn = await asyncpg.connect(pg_url)
    try:
        assert await conn.fetchval("SELECT 1 + 1") == 2
        assert await conn.fetchval("SHOW fsync") == "on"
        assert await conn.fetchval("SHOW server_encoding") == "UTF8"
        assert await conn.fetchval("SELECT current_database()") == pg_url.rsplit("/", 1)[1]
        tables = await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert tables == 0
    finally:
        await conn.close()


async def test_each_test_gets_its_own_database(pg_url: str, pg_server: pgcluster.PgCluster) -> None:
    other = pg_server.create_database("t_other_for_isolation")
    try:
        first, second = await asyncpg.connect(pg_url), await asyncpg.connect(other)
        try:
            await first.execute("CREATE TABLE mine (x int)")
            seen = await second.fetchval("SELECT count(*) FROM pg_tables WHERE tablename = 'mine'")
            assert seen == 0
        finally:
            await first.close()
            await second.close()
    finally:
        pg_server.drop_database("t_other_for_isolation")
    listed = pg_server.psql("SELECT datname FROM pg_database").split()
    assert "t_other_for_isolation" not in listed
    assert "gengate" in listed


async def test_restart_keeps_port_and_data(own_pg_server: pgcluster.PgCluster) -> None:
    url, port = own_pg_server.url("gengate"), own_pg_server.port
    conn = await asyncpg.connect(url)
    await conn.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (7)")

    own_pg_server.restart()

    assert own_pg_server.port == port
    assert own_pg_server.is_running()
    with pytest.raises((asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError)):
        await conn.fetchval("SELECT 1")  # the old session ended with the server
    conn.terminate()
    again = await asyncpg.connect(url)
    try:
        assert await again.fetchval("SELECT x FROM kept") == 7
    finally:
        await again.close()


async def test_down_refuses_connections_then_recovers(own_pg_server: pgcluster.PgCluster) -> None:
    url = own_pg_server.url("gengate")
    with own_pg_server.down():
        assert not own_pg_server.is_running()
        with pytest.raises(ConnectionRefusedError):
            await asyncpg.connect(url, timeout=10)
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


async def test_committed_rows_survive_an_immediate_stop(own_pg_server: pgcluster.PgCluster) -> None:
    """`stop -m immediate` is a crash as far as the data folder knows: recovery replays the WAL."""
    url = own_pg_server.url("gengate")
    conn = await asyncpg.connect(url)
    await conn.execute("CREATE TABLE rows (x int)")
    await conn.executemany("INSERT INTO rows VALUES ($1)", [(n,) for n in range(100)])
    conn.terminate()

    own_pg_server.stop("immediate")
    own_pg_server.start()

    again = await asyncpg.connect(url)
    try:
        assert await again.fetchval("SELECT count(*) FROM rows") == 100
    finally:
        await again.close()


def test_cluster_folder_is_removed_after_use() -> None:
    with pgcluster.running_cluster(fsync=False) as cluster:
        root = cluster.root
        assert cluster.psql("SHOW fsync").strip() == "off"
        assert (root / "data" / "PG_VERSION").is_file()
    assert not root.exists()


@pytest.mark.parametrize(("ci", "outcome"), [("true", "error"), ("", "skipped")])
def test_missing_postgres_fails_under_ci_and_skips_elsewhere(ci: str, outcome: str, tmp_path: Path) -> None:
    """A PostgreSQL test run where no server binaries can be found (an empty bindir)."""
    env = {**os.environ, pgcluster.BINDIR_VARIABLE: str(tmp_path), "CI": ci}
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfs"]
    argv.append(f"{TESTS / 'test_pgcluster.py'}::test_server_answers_a_query")
    done = subprocess.run(
        argv, cwd=TESTS.parent, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    out = done.stdout + done.stderr
    assert f"1 {outcome}" in out, out
    assert "PostgreSQL is not installed" in out, out
    assert done.returncode == (1 if outcome == "error" else 0), out
