"""Whether the store's writes reach the disk: `/readyz` is not ready while they do not.

A full disk, a read-only file or an I/O error fails every submit while reads (and so a plain
"does the store answer" probe) go on working. The writer notes each failure of that kind and
each commit that changed something; the last of the two says how writes are doing now.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable

#: SQLite's primary result codes for "the storage failed", not "the statement is wrong".
_STORAGE_CODES = frozenset(
    {sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN}
)


def is_storage_failure(exc: BaseException | None) -> bool:
    """A disk full, I/O or read-only failure of SQLite (extended codes included)."""
    code = getattr(exc, "sqlite_errorcode", None) if isinstance(exc, sqlite3.Error) else None
    return code is not None and code & 0xFF in _STORAGE_CODES


class WriteHealth:
    """The last storage failure of a write, until a write succeeds after it. Set by the writer
    thread and read on the event loop: each is one assignment or read of one attribute."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failure: tuple[float, str] | None = None

    def record(self, errors: Iterable[BaseException | None], wrote: bool) -> None:
        """After a commit attempt: the errors of its operations, and whether it changed rows."""
        failure = next((exc for exc in errors if is_storage_failure(exc)), None)
        if failure is not None:
            self._failure = (self._clock(), str(failure))
        elif wrote:
            self._failure = None

    def failing(self, within_s: float) -> tuple[float, str] | None:
        """`(seconds ago, error)` of the last write that failed for its storage, if that was at
        most `within_s` ago and no write has succeeded since; else None."""
        failure = self._failure
        if failure is None:
            return None
        age = self._clock() - failure[0]
        return (age, failure[1]) if age <= within_s else None
