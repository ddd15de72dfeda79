"""Reading a local store's signed URLs the way the `/files/` route does."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from gengate.domain.errors import TaskNotFound
from gengate.domain.task import ResultFile
from gengate.files.local import LocalFileStore


def url_query(url: str) -> tuple[str, str, str, str]:
    """`(task_id, name, expires, signature)` of a URL from `store.url`, as the route sees them."""
    parts = urlsplit(url)
    _, files, task_id, name = parts.path.split("/")
    assert files == "files"
    query = parse_qs(parts.query, strict_parsing=True)
    return unquote(task_id), unquote(name), query["expires"][0], query["signature"][0]


def served(store: LocalFileStore, task_id: str, name: str, now_ms: int) -> bytes | None:
    """What `/files/` would serve at `now_ms` for the task's file, kept as a file or a row;
    None if nothing."""
    url = store.url(task_id, ResultFile(name, "", 0), now_ms + 60_000)
    try:
        found, _ = store.resolve(*url_query(url), now_ms=now_ms)
    except TaskNotFound:
        return None
    return found.read_bytes() if isinstance(found, Path) else found
