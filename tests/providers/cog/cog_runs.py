"""What a cog provider test's run reported: its context, logs and plain outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gengate.providers.base import RunContext


@dataclass
class Run:
    """A run's context and what the provider reported through it."""

    ctx: RunContext
    logs: list[str] = field(default_factory=list)
    outputs: list[Any] = field(default_factory=list)

    @property
    def log_text(self) -> str:
        return "".join(self.logs)
