"""The bounds a server process puts on its connections, taken from the settings."""

from __future__ import annotations

import resource
from dataclasses import dataclass

from gengate.settings import Settings

#: Descriptors kept free of client connections for the database, files and outbound calls
#: (at most this many; a quarter of a smaller limit).
RESERVED_DESCRIPTORS = 512
#: The cap when the open-file limit is unlimited.
UNLIMITED_FILES_CAP = 65_536


@dataclass(frozen=True)
class ConnectionLimits:
    max_header_bytes: int = 65_536
    header_timeout_s: float = 10.0
    keep_alive_s: float = 5.0
    max_connections: int = 768

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            max_header_bytes=settings.max_header_bytes,
            header_timeout_s=settings.header_timeout_s,
            keep_alive_s=settings.keep_alive_s,
            max_connections=settings.max_connections or default_max_connections(),
        )


def default_max_connections() -> int:
    """The open-file limit less a reserve, so that a crowd of clients meets a 503 rather than
    `accept()` failing and, with it, every file and database the process opens."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return UNLIMITED_FILES_CAP
    return max(1, soft - min(RESERVED_DESCRIPTORS, soft // 4))
