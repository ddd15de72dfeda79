"""One writer thread per database, committing many operations together (group commit).

SQLite takes one writer at a time, and a durable commit costs an fsync. Funnelling every
write through one thread never meets a busy database, and whatever arrived while the last
commit was on its way to disk goes into the next transaction: under load, one fsync serves
hundreds of submits. The fsync releases the GIL, so the event loop runs meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from gengate.store.write_health import WriteHealth

T = TypeVar("T")
log = logging.getLogger(__name__)

#: Most operations in one transaction: bounds how long one commit holds the writer.
MAX_BATCH = 512


@dataclass(slots=True)
class _Op:
    fn: Callable[[sqlite3.Connection], Any]
    after: Callable[[Any], None] | None
    future: asyncio.Future[Any]


_STOP = object()


#: How often an idle writer looks for commits of other processes on the same file: the longest
#: a worker process waits to hear of a task another process queued. A `PRAGMA data_version`
#: costs a few microseconds; at 50 ms the split drain bench's claim latency was 22 ms (p50).
FOREIGN_POLL_S = 0.005


class SQLiteWriter:
    def __init__(
        self, path: Path, pragmas: tuple[str, ...], on_foreign_commit: Callable[[], None] | None = None
    ) -> None:
        self._path = path
        self._pragmas = pragmas
        #: Called on the loop when another process committed to the file (`gengate worker` or
        #: `serve --processes` beside this one): their changes reach no hub of ours otherwise.
        self._on_foreign_commit = on_foreign_commit
        self._queue: queue.SimpleQueue[_Op | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Whether commits reach the disk (`/readyz` reads it).
        self.health = WriteHealth()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._run, args=(ready, failure), name="gengate-sqlite-writer", daemon=True
        )
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]

    async def stop(self) -> None:
        if self._thread is None:
            return
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    def submit(
        self, fn: Callable[[sqlite3.Connection], T], after: Callable[[T], None] | None = None
    ) -> asyncio.Future[T]:
        """Queue `fn` for the next transaction; `after` runs on the loop once it is committed."""
        assert self._loop is not None, "writer not started"
        future: asyncio.Future[T] = self._loop.create_future()
        self._queue.put(_Op(fn, after, future))
        return future

    # -- the thread ----------------------------------------------------------
    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        try:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            for pragma in self._pragmas:
                conn.execute(pragma)
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            return
        ready.set()
        # `data_version` of this connection moves only when another connection commits; the
        # reader never writes, so a move means another process.
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        checked = time.monotonic()
        try:
            while True:
                try:
                    first = self._queue.get(timeout=FOREIGN_POLL_S)
                except queue.Empty:
                    version, checked = self._check_foreign(conn, version), time.monotonic()
                    continue
                if first is _STOP:
                    return
                batch = [first]
                stop = False
                while len(batch) < MAX_BATCH:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop = True
                        break
                    batch.append(item)
                self._commit(conn, batch)  # type: ignore[arg-type]
                if stop:
                    return
                # Busy: look once per poll period, not after every commit (the pragma was 5% of
                # the drain's profile when checked after each one).
                if time.monotonic() - checked >= FOREIGN_POLL_S:
                    version, checked = self._check_foreign(conn, version), time.monotonic()
        finally:
            conn.close()

    def _check_foreign(self, conn: sqlite3.Connection, seen: int) -> int:
        try:
            version: int = conn.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            return seen
        if version != seen and self._on_foreign_commit is not None and self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._on_foreign_commit)
        return version

    def _commit(self, conn: sqlite3.Connection, batch: list[_Op]) -> None:
        results: list[tuple[_Op, Any, BaseException | None]] = []
        changes = conn.total_changes
        try:
            conn.execute("BEGIN IMMEDIATE")
            # One cursor for the savepoints: `conn.execute` makes a cursor per call.
            marks = conn.cursor()
            for op in batch:
                # A savepoint per operation: one failing statement spoils only its own op.
                marks.execute("SAVEPOINT op")
                try:
                    result = op.fn(conn)
                except Exception as exc:
                    # A database error, or an operation refusing (a submit past its credits):
                    # its writes are undone and its caller gets the exception.
                    marks.execute("ROLLBACK TO op")
                    results.append((op, None, exc))
                else:
                    results.append((op, result, None))
                marks.execute("RELEASE op")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            # The disk or the file failed (full, read-only, I/O error), not our code: one line.
            # Each caller gets the error and says what it could not do.
            log.error("sqlite commit of %d operations failed: %s", len(batch), exc)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            results = [(op, None, exc) for op in batch]
            changes = conn.total_changes
        self.health.record((exc for _op, _result, exc in results), conn.total_changes > changes)
        assert self._loop is not None
        # RuntimeError: the loop closed under us, and nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(_resolve, results)


def _resolve(results: list[tuple[_Op, Any, BaseException | None]]) -> None:
    for op, result, exc in results:
        if exc is None and op.after is not None:
            try:
                op.after(result)
            except Exception:
                log.exception("post-commit hook failed")
        if op.future.done():
            continue
        if exc is None:
            op.future.set_result(result)
        else:
            op.future.set_exception(exc)
