"""Secrets the embedded setup makes on first start and keeps in the data folder (mode 0600)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from gengate.domain.ids import new_api_key
from gengate.settings import Settings

ADMIN_KEY_FILE = "admin_key"
SECRET_FILE = "secret"  # noqa: S105 - a file name, not a secret


def admin_key(settings: Settings) -> tuple[str, bool]:
    """The admin key, and whether it was made just now (so it is printed once)."""
    if settings.admin_key is not None:
        return settings.admin_key.get_secret_value(), False
    path = settings.data_dir / ADMIN_KEY_FILE
    if path.is_file():
        return path.read_text().strip(), False
    key = "gga_" + new_api_key().removeprefix("gg_")
    _write_private(path, key)
    return key, True


def server_secret(settings: Settings) -> bytes:
    """The key that signs result URLs; every API process of one gateway must share it."""
    if settings.secret is not None:
        return settings.secret.get_secret_value().encode()
    path = settings.data_dir / SECRET_FILE
    if path.is_file():
        return path.read_text().strip().encode()
    value = secrets.token_urlsafe(32)
    _write_private(path, value)
    return value.encode()


def _write_private(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
