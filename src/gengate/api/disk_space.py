"""Free space of the folders the gateway writes to, against the minimum `/readyz` asks for.

On a full disk every submit fails while reads work on: a balancer that only asks "does the
store answer" keeps sending traffic there. The space is read at most once a second, so a
balancer polling `/readyz` often costs one `statvfs` a second.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from gengate.settings import Settings
from gengate.store.factory import is_postgres_url

log = logging.getLogger(__name__)

#: The setting that sets the minimum, named in `/readyz`'s answer.
SETTING = "GENGATE_MIN_FREE_BYTES"


class DiskSpace:
    """Free bytes of each named folder (`data`, `files`, ...), read at most every `max_age_s`."""

    def __init__(
        self,
        folders: Mapping[str, Path],
        min_free_bytes: int,
        *,
        max_age_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.folders = dict(folders)
        self.min_free_bytes = min_free_bytes
        self._max_age_s = max_age_s
        self._clock = clock
        self._read: tuple[float, dict[str, int]] | None = None

    @classmethod
    def of_settings(cls, settings: Settings) -> DiskSpace:
        """The data folder; the SQLite database's folder when it lies elsewhere; the files
        folder when result files are kept locally."""
        folders = {"data": settings.data_dir}
        if not is_postgres_url(settings.database_url) and settings.sqlite_path.parent != settings.data_dir:
            folders["database"] = settings.sqlite_path.parent
        if not settings.files_url:
            folders["files"] = settings.files_dir
        return cls(folders, settings.min_free_bytes)

    def free(self) -> dict[str, int]:
        """Free bytes by folder name; a folder whose disk cannot be read is left out."""
        now = self._clock()
        if self._read is not None and now - self._read[0] < self._max_age_s:
            return self._read[1]
        free: dict[str, int] = {}
        for name, folder in self.folders.items():
            try:
                free[name] = shutil.disk_usage(_existing(folder)).free
            except OSError as exc:
                log.warning("readiness: cannot read the free space of the %s folder: %s", name, exc)
        self._read = (now, free)
        return free

    def low(self) -> dict[str, int]:
        """The folders with less free space than the minimum, and what they have."""
        return {name: free for name, free in self.free().items() if free < self.min_free_bytes}


def _existing(folder: Path) -> Path:
    """`folder`, or its nearest existing parent: a folder made on first use lives on that disk."""
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return folder
