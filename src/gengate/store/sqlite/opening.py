"""Opening the SQLite database: what goes wrong (a read-only folder, a file that is not a
database) becomes a :class:`StartupError` naming the file and what to do, not a traceback
that says `unable to open database file` and no path."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from yoyo.exceptions import LockTimeout

from gengate.startup import StartupError, ensure_folder, reason
from gengate.store.migrate import migrate_sqlite

CHOOSE_ANOTHER = "choose another place with GENGATE_DATA_DIR or GENGATE_DATABASE_URL"


def prepare_sqlite(path: Path) -> int:
    """Make or upgrade the database (migrations); returns how many migrations ran."""
    ensure_folder(path.parent, "database folder", CHOOSE_ANOTHER)
    with opening(path):
        if path.is_file():
            # A read-only file would have yoyo retry its lock for 10 s, then blame a lock.
            with path.open("r+b"):
                pass
        return migrate_sqlite(path)


@contextmanager
def opening(path: Path) -> Iterator[None]:
    try:
        yield
    except sqlite3.DatabaseError as exc:
        raise StartupError(_message(path, exc)) from None
    except LockTimeout as exc:
        if isinstance(exc.__context__, sqlite3.DatabaseError):
            raise StartupError(_message(path, exc.__context__)) from None
        raise StartupError(
            f"the database {path} is locked by a migration in another process ({exc})"
        ) from None
    except OSError as exc:
        raise StartupError(
            f"cannot write the database {path} ({reason(exc)}): the file and its folder must be writable "
            f"by this user; or {CHOOSE_ANOTHER}"
        ) from None


def _message(path: Path, exc: sqlite3.DatabaseError) -> str:
    text = reason(exc)
    if path.is_dir():
        return f"the database {path} is a folder, not a file; {CHOOSE_ANOTHER}"
    if "not a database" in text:
        return f"{path} is not a SQLite database ({text}): move it away, or {CHOOSE_ANOTHER}"
    if "readonly" in text or "unable to open" in text:
        return (
            f"cannot write the database {path} ({text}): the file and its folder must be writable "
            f"by this user; or {CHOOSE_ANOTHER}"
        )
    return f"cannot use the database {path} ({text}); {CHOOSE_ANOTHER}"
