"""Why gengate cannot start: one exception, whose message says what is wrong, where, and what to do.

The code that reads the configuration, the data folder or the database translates its low-level
errors (a pydantic dump, `PermissionError`, `sqlite3.OperationalError`, a refused connection)
into a :class:`StartupError` at its own edge, naming the file, folder or URL; the command line
shows the message alone (one or two lines, no traceback) and exits with status 1.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


class StartupError(Exception):
    """A configuration, data folder or database gengate cannot use; the message is complete."""


class ConfigFileError(StartupError, ValueError):
    """A setting that cannot be used, named by the file or `GENGATE_*` variable it came from."""


def did_you_mean(word: str, known: Iterable[str], template: str = '"{}"') -> str:
    """`; did you mean "timeout_s"?` for the nearest known word, or nothing when none is near."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f"; did you mean {template.format(close[0])}?" if close else ""


def redacted_url(url: str) -> str:
    """A database URL fit for a message or a log line: any password replaced."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # an unparsable port or netloc: keep nothing that could be a secret
        return url.split("://", 1)[0] + "://..."
    if password is None:
        return url
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def reason(exc: BaseException) -> str:
    """An OS or driver error in a few words: its first line, without the path it names."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].strip()


def ensure_folder(path: Path, what: str, fix: str) -> None:
    """`path` made if missing and writable by this process, else a StartupError naming it.

    `what` names the folder (`data folder`), `fix` says where to choose another.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise StartupError(f"{what} {path} is a file, not a folder: {fix}") from None
    except NotADirectoryError:
        blocker = next((parent for parent in path.parents if parent.is_file()), path.parent)
        raise StartupError(
            f"{what} {path} cannot be made: {blocker} is a file, not a folder; {fix}"
        ) from None
    except OSError as exc:
        where = _nearest_existing(path)
        raise StartupError(
            f"{what} {path} cannot be made: {where} is not writable ({reason(exc)}); {fix}"
        ) from None
    try:
        probe, name = tempfile.mkstemp(dir=path, prefix=".gengate-write-test-")
    except OSError as exc:
        raise StartupError(
            f"{what} {path} is not writable ({reason(exc)}): make it writable by this user, or {fix}"
        ) from None
    os.close(probe)
    os.unlink(name)


def _nearest_existing(path: Path) -> Path:
    return next((parent for parent in path.parents if parent.exists()), Path(path.anchor or "."))
