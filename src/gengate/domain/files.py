"""A task's output file as providers make it and the file stores keep it: plain data, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class OutputFile:
    """A file a provider wrote under `RunContext.output_dir`, or made in memory.

    Fields: `path` (inside the output folder; its name is the file's name), `content_type`
    (MIME type), `data` (the bytes, for a small output made in memory: then nothing is read
    from `path`, and the store writes it straight to its place, skipping the staging folder).
    """

    path: Path
    content_type: str
    data: bytes | None = None
