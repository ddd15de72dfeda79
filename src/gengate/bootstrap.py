"""The data folder, and the secrets the embedded setup makes on first start and keeps in it
(mode 0600). A folder or secret file that cannot be used is a :class:`StartupError` naming it."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from gengate.domain.ids import new_api_key
from gengate.settings import Settings
from gengate.startup import StartupError, ensure_folder, reason

ADMIN_KEY_FILE = "admin_key"
SECRET_FILE = "secret"  # noqa: S105 - a file name, not a secret
#: Where to choose another data folder, said after what is wrong with this one.
CHOOSE_ANOTHER = "choose another with GENGATE_DATA_DIR (or serve's --data-dir)"


def data_folder(settings: Settings) -> None:
    """The data folder (and the files folder in it, unless files go to S3) made if missing and
    checked writable, before anything is written there."""
    ensure_folder(settings.data_dir, "data folder", CHOOSE_ANOTHER)
    if not settings.files_url:
        ensure_folder(settings.files_dir, "files folder", CHOOSE_ANOTHER)


def admin_key(settings: Settings) -> tuple[str, bool]:
    """The admin key, and whether it was made just now (so it is printed once)."""
    if settings.admin_key is not None:
        return settings.admin_key.get_secret_value(), False
    path = settings.data_dir / ADMIN_KEY_FILE
    if path.is_file():
        return _read(path), False
    key = "gga_" + new_api_key().removeprefix("gg_")
    _write_private(path, key)
    return key, True


def server_secret(settings: Settings) -> bytes:
    """The key that signs result URLs; every API process of one gateway must share it."""
    if settings.secret is not None:
        return settings.secret.get_secret_value().encode()
    path = settings.data_dir / SECRET_FILE
    if path.is_file():
        return _read(path).encode()
    value = secrets.token_urlsafe(32)
    _write_private(path, value)
    return value.encode()


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise StartupError(f"cannot read {path} ({reason(exc)}): make it readable by this user") from None


def _write_private(path: Path, value: str) -> None:
    ensure_folder(path.parent, "data folder", CHOOSE_ANOTHER)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value + "\n")
    except OSError as exc:
        raise StartupError(f"cannot write {path} ({reason(exc)}): {CHOOSE_ANOTHER}") from None
