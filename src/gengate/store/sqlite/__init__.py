"""The SQLite driver and the embedded store built on it."""

from gengate.store.sqlite.store import SQLiteStore

__all__ = ["SQLiteStore"]
