"""Where a bench's gengate keeps its tasks: SQLite in its data folder (the default) or PostgreSQL,
either a cluster this bench starts (`tests/pgcluster.py`, fsync on) or a database given by URL.

The benches read the task table behind the server's back (counts, timestamps) and bulk-insert
rows into it, through a plain DB-API connection: stdlib `sqlite3`, or psycopg for PostgreSQL.
Reading the table costs the server nothing, where polling its HTTP API would load what is measured.
"""

from __future__ import annotations

import importlib.util
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
PGCLUSTER = ROOT / "tests" / "pgcluster.py"
DATABASE = "gengate"


class Connection(Protocol):
    def cursor(self) -> Any: ...
    def commit(self) -> None: ...
    def close(self) -> None: ...


def pgcluster() -> ModuleType:
    """`tests/pgcluster.py`, imported by path: the tests folder is no package."""
    if (loaded := sys.modules.get("pgcluster")) is not None:
        return loaded
    spec = importlib.util.spec_from_file_location("pgcluster", PGCLUSTER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["pgcluster"] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


@dataclass
class Backend:
    """`name` is `sqlite` or `postgresql`; `url` the PostgreSQL URL (None for SQLite)."""

    name: str
    url: str | None = None

    def env(self) -> dict[str, str]:
        """What `gengate serve` needs in its environment to use this backend."""
        return {"GENGATE_DATABASE_URL": self.url} if self.url else {}

    def connect(self, data_dir: Path) -> Connection:
        """A connection to the server's task table (SQLite: in `data_dir`), autocommitting reads."""
        if self.url is None:
            conn = sqlite3.connect(data_dir / "gengate.db", timeout=30, isolation_level=None)
            conn.execute("PRAGMA busy_timeout = 30000")
            return conn
        import psycopg

        return psycopg.connect(self.url, autocommit=True)

    @contextmanager
    def sibling(self, name: str) -> Iterator[Backend]:
        """Another, empty database of the same kind, dropped afterwards (SQLite: each server
        has a data folder of its own anyway)."""
        if self.url is None:
            yield Backend(self.name)
            return
        import psycopg

        url = urlsplit(self.url)._replace(path=f"/{name}").geturl()
        with psycopg.connect(self.url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield Backend(self.name, url)
        finally:
            with psycopg.connect(self.url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def scalar(self, conn: Connection, sql: str) -> Any:
        cursor = conn.cursor()
        cursor.execute(sql)
        row = cursor.fetchone()
        return None if row is None else row[0]

    def rows(self, conn: Connection, sql: str) -> list[tuple[Any, ...]]:
        cursor = conn.cursor()
        cursor.execute(sql)
        return [tuple(row) for row in cursor.fetchall()]


@contextmanager
def open_backend(*, pg: bool, pg_url: str | None = None) -> Iterator[Backend]:
    """SQLite; or `pg_url` as given (a database the bench may fill); or, with `pg`, a cluster of
    our own in a temp folder with a `gengate` database, removed afterwards."""
    if pg_url:
        yield Backend("postgresql", pg_url)
        return
    if not pg:
        yield Backend("sqlite")
        return
    clusters = pgcluster()
    try:
        bindir = clusters.require_bindir()
    except clusters.PostgresMissing as exc:
        raise SystemExit(f"bench: {exc}") from exc
    with clusters.running_cluster(bindir=bindir) as cluster:
        yield Backend("postgresql", cluster.create_database(DATABASE))
