"""The store under test, once per backend: SQLite in a temp folder, and a real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gengate.store.postgres import PostgresStore
from gengate.store.sqlite import SQLiteStore


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SQLiteStore | PostgresStore]:
    opened: SQLiteStore | PostgresStore
    if request.param == "sqlite":
        opened = SQLiteStore(tmp_path / "db.sqlite")
    else:
        opened = PostgresStore(request.getfixturevalue("pg_url"))
    await opened.open()
    yield opened
    await opened.close()
