"""A task as read from the wire: plain data, parsed once so callers never touch JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

#: States after which a task never changes again; polling stops here.
TERMINAL_STATES: Final = frozenset({"success", "failed"})


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """One status reading of a task, as the APIXO `statusTask` body describes it.

    `state` stays a plain string so a hosted service that adds a state does not break the client.
    Times are Unix milliseconds, as on the wire; `raw` keeps the `data` object for fields we do not model.
    """

    task_id: str
    state: str
    create_time: int | None = None
    progress: int | None = None
    result_urls: list[str] = field(default_factory=list)
    cost_time: int | None = None
    complete_time: int | None = None
    fail_code: str | None = None
    fail_msg: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_terminal(self) -> bool:
        """Whether polling can stop: the task succeeded or failed for good."""
        return self.state in TERMINAL_STATES

    @property
    def succeeded(self) -> bool:
        """Whether the task finished with results."""
        return self.state == "success"
