"""Schema migrations: SQL files beside this module, applied with yoyo.

`gengate migrate` runs them, and so does the embedded setup at start; applying is
idempotent and serialised by yoyo's lock, so several processes may start at once.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from pathlib import Path

from yoyo import get_backend, read_migrations


def migrations_dir(backend: str) -> Path:
    return Path(str(resources.files("gengate.store") / "migrations" / backend))


def migrate_sqlite(path: Path) -> int:
    """Apply what is missing; returns how many migrations ran."""
    path.parent.mkdir(parents=True, exist_ok=True)
    backend = get_backend(f"sqlite:///{path}")
    migrations = read_migrations(str(migrations_dir("sqlite")))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return len(pending)


def _migrate_postgres_sync(dsn: str) -> int:
    # yoyo speaks psycopg 3 under this scheme; the store itself uses asyncpg.
    url = "postgresql+psycopg://" + dsn.split("://", 1)[1]
    backend = get_backend(url)
    migrations = read_migrations(str(migrations_dir("postgres")))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return len(pending)


async def migrate_postgres(dsn: str) -> int:
    """Apply what is missing (in a thread: yoyo is synchronous); returns how many ran."""
    return await asyncio.to_thread(_migrate_postgres_sync, dsn)


def migrate_url(database_url: str) -> int:
    """`gengate migrate`: the schema of whichever backend the URL names."""
    if database_url.startswith(("postgresql://", "postgres://")):
        return _migrate_postgres_sync(database_url)
    return migrate_sqlite(Path(database_url.removeprefix("sqlite:///")))
