"""The embedded store: the store's logic over the SQLite driver, in WAL mode."""

from __future__ import annotations

from pathlib import Path

from gengate.store.notify import ChangeHub
from gengate.store.sql_store import SqlStore
from gengate.store.sqlite.driver import SQLiteDriver
from gengate.store.write_health import WriteHealth


class SQLiteStore(SqlStore):
    driver: SQLiteDriver

    def __init__(self, path: Path, hub: ChangeHub | None = None, *, first_callback_delay_ms: int = 0) -> None:
        hub = hub or ChangeHub()
        super().__init__(SQLiteDriver(path, hub), hub, first_callback_delay_ms)
        self.path = path

    def prepare(self) -> None:
        """Make or upgrade the file, once, before a server starts (see `build_store`)."""
        self.driver.prepare()

    @property
    def write_health(self) -> WriteHealth:
        """Whether writes reach the disk, for `/readyz`."""
        return self.driver.write_health
