"""Schema migrations: SQL files beside this module, applied with yoyo.

`gengate migrate` runs them, and so does the embedded setup at start; applying is
idempotent and serialised by yoyo's lock, so several processes may start at once.
"""

from __future__ import annotations

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
