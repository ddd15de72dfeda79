"""The file store interface.

Workers hand it the files a provider wrote; the API asks it for URLs. URLs are signed with
the server secret and expire `result_ttl` after the task completed, so the expiry of a
result is fixed at completion and the same URL is given on every read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from gengate.domain.files import OutputFile
from gengate.domain.task import ResultFile


class FileStore(Protocol):
    async def save(
        self, task_id: str, outputs: Sequence[OutputFile], *, first_attempt: bool = False
    ) -> tuple[ResultFile, ...]:
        """Take the provider's files into the store (moved, not copied, where possible).
        `first_attempt`: no earlier attempt of the task can have saved anything, so nothing of
        one needs removing (true only for a task's first claim)."""
        ...

    def url(self, task_id: str, file: ResultFile, expires_ms: int) -> str:
        """A URL that serves the file until `expires_ms` (Unix ms)."""
        ...

    def staging_path(self, task_id: str, attempt: int) -> Path:
        """Where `staging_dir` would put the attempt's folder, without making it."""
        ...

    def staging_dir(self, task_id: str, attempt: int) -> Path:
        """An empty folder for one attempt's outputs, on the same file system as the store."""
        ...

    async def delete(self, task_id: str, names: Sequence[str] = ()) -> None:
        """Remove a task's files (retention clean-up); missing files are not an error.

        `names` are the files the task recorded; without them the store looks for the task's
        files itself, which can cost a folder scan."""
        ...

    async def close(self) -> None:
        """Release connections and threads once no save or delete is running."""
        ...
