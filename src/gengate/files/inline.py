"""Small results kept as rows of one SQLite database in the files folder, not as files.

A file costs an inode, and creating one is the part of a save that depends on the disk's past:
on ext4 without a journal (this project's CI machine) each new inode is searched for past every
recently deleted one, which made one small result file cost from 60 us to over 1 ms of kernel
time. A row costs neither, and a batch of saves shares one transaction. The 64 KiB limit stays
well under the size where SQLite's own measurements find files the faster place for a blob
(https://www.sqlite.org/intern-v-extern-blob.html).

Every process that saves or serves results opens the same database (the API processes of
`serve --processes`, standalone workers sharing the folder); WAL lets readers run beside the
one writer, and `busy_timeout` queues writers of other processes. Commits are `synchronous =
NORMAL`: a save survives the process crashing, as a written but not fsynced file does.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

#: Outputs up to this size that a provider made in memory are kept as rows.
INLINE_MAX_BYTES = 64 * 1024
#: How long a writer waits for another process's transaction before giving up.
_BUSY_TIMEOUT_MS = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS result_blobs (
    task_id TEXT NOT NULL,
    name TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (task_id, name)
) WITHOUT ROWID
"""


class InlineResults:
    """The rows of `path`; the database is made on the first save, so a store that never
    keeps a small result never has one. Thread-safe: saves, reads and deletes run in worker
    threads. Reads have a connection of their own, so a save waiting for another process's
    transaction never holds up a download."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._writer = _Connection(path)
        self._reader = _Connection(path)

    def put_many(self, rows: Sequence[tuple[str, str, bytes]]) -> None:
        """Keep `(task_id, name, data)` rows in one transaction; a name saved again (a retried
        attempt) is replaced."""
        if not rows:
            return
        with self._writer.open(create=True) as db:
            assert db is not None
            with _transaction(db):
                db.executemany("INSERT OR REPLACE INTO result_blobs VALUES (?, ?, ?)", rows)

    def get(self, task_id: str, name: str) -> bytes | None:
        with self._reader.open(create=False) as db:
            if db is None:
                return None
            row = db.execute(
                "SELECT data FROM result_blobs WHERE task_id = ? AND name = ?", (task_id, name)
            ).fetchone()
        return None if row is None else bytes(row[0])

    def delete(self, task_id: str, names: Sequence[str] = ()) -> None:
        """Remove the task's rows of these names, or every row of the task without names."""
        with self._writer.open(create=False) as db:
            if db is None:
                return
            if names:
                rows = [(task_id, name) for name in names]
                with _transaction(db):
                    db.executemany("DELETE FROM result_blobs WHERE task_id = ? AND name = ?", rows)
            else:
                db.execute("DELETE FROM result_blobs WHERE task_id = ?", (task_id,))

    def close(self) -> None:
        self._writer.close()
        self._reader.close()


class _Connection:
    """One lazily opened connection and the lock that serialises its users."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    @contextlib.contextmanager
    def open(self, *, create: bool) -> Iterator[sqlite3.Connection | None]:
        """The connection, held under the lock; None when the database does not exist and
        `create` is false, so a read or delete on a store without one costs one stat."""
        with self._lock:
            if self._db is None and (create or self._path.exists()):
                self._db = _connect(self._path)
            yield self._db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute(_SCHEMA)
    return db


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """`BEGIN IMMEDIATE` ... `COMMIT`, rolled back on error: the write lock is taken up front,
    so a busy database is waited for at `BEGIN` instead of failing at the first write."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
