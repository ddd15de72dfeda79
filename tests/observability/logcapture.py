"""The process's logging, configured for real (:func:`gengate.observability.logs.configure`) into a
buffer a test reads; put back as it was afterwards."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from gengate.observability import logs


class Captured:
    def __init__(self, raw: io.BytesIO) -> None:
        self.raw = raw

    def text(self) -> str:
        return self.raw.getvalue().decode()

    def lines(self) -> list[str]:
        return [line for line in self.text().splitlines() if line]

    def records(self) -> list[dict[str, Any]]:
        """Every JSON line, parsed (a line that does not parse fails the test here)."""
        return [json.loads(line) for line in self.lines()]


@pytest.fixture
def configure_logs() -> Iterator[Any]:
    """`configure_logs(level, fmt)`: the real configuration, writing to a buffer."""
    root = logging.getLogger()
    saved = (root.level, list(root.handlers), logging.getLogRecordFactory())

    def configure(level: str = "info", fmt: str = "json") -> Captured:
        raw = io.BytesIO()
        logs.configure(level, fmt, io.TextIOWrapper(raw, write_through=True))
        return Captured(raw)

    yield configure
    logs.reset()
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    logging.setLogRecordFactory(saved[2])
