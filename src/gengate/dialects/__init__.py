"""Wire formats ("dialects") as pure renderers: one module per dialect, and the registry here.

A dialect module knows its wire format and the domain, nothing of Starlette or the store.
Adding one (say `replicate.py`) means a member of :class:`gengate.domain.dialect.Dialect`,
a module here registered in `MODULES`, and its routes in :mod:`gengate.api`. The module provides:

- `MESSAGE_FIELD`: the name of the message beside `code` in its envelope (None: no envelope);
- `callback_body(task, links) -> bytes`: what a task created in it posts when it ends;
- `error_envelope(error, trace_id) -> dict`: a `GatewayError` as its routes answer it;
- its status body and state names (`status_data`/`record_data`, `state_name`, maps of names)
  for its own routes and for the relay that speaks it upstream.

`links` (:class:`gengate.dialects.links.Links`) gives a finished task's signed URLs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from gengate.dialects import apixo, fal, kie, openai_images, replicate, xhuo
from gengate.dialects.links import Links
from gengate.domain.dialect import Dialect
from gengate.domain.errors import GatewayError
from gengate.domain.task import Task, TaskLog


class DialectModule(Protocol):
    """What every dialect module provides (modules satisfy this protocol as they are)."""

    @property
    def MESSAGE_FIELD(self) -> str | None: ...

    def callback_body(self, task: Task, links: Links) -> bytes: ...

    def error_envelope(self, error: GatewayError, trace_id: str) -> dict[str, Any]: ...


MODULES: Mapping[Dialect, DialectModule] = {
    Dialect.APIXO: apixo,
    Dialect.KIE: kie,
    Dialect.XHUO: xhuo,
    Dialect.FAL: fal,
    Dialect.REPLICATE: replicate,
    Dialect.OPENAI: openai_images,
}


#: The dialects whose callback bodies carry the run's log lines (Replicate's `logs`): the sender
#: reads a task's lines for these only.
CALLBACK_LOGS: Mapping[Dialect, Callable[[Task, Links, Sequence[TaskLog]], bytes]] = {
    Dialect.REPLICATE: replicate.callback_body
}


def render_callback(
    dialect: Dialect | str, task: Task, links: Links, logs: Sequence[TaskLog] | None = None
) -> bytes:
    """The callback body of `task` in `dialect` (the one it was created in), with the run's
    `logs` where the dialect shows them and they were read."""
    with_logs = CALLBACK_LOGS.get(Dialect(dialect))
    if with_logs is not None and logs is not None:
        return with_logs(task, links, logs)
    return MODULES[Dialect(dialect)].callback_body(task, links)


#: The dialects whose callbacks may also be owed while a task runs (Replicate's `start` and
#: `logs` webhook events), each with whether a task asked for an event; the others call back
#: at the end only.
RUNNING_CALLBACKS: Mapping[Dialect, Callable[[Task, str], bool]] = {
    Dialect.REPLICATE: replicate.webhook_wants
}

#: The events of a running task a callback can be owed for.
START, LOGS = "start", "logs"


def callback_on(task: Task, event: str) -> bool:
    """Whether `task` owes its callback URL a delivery for `event` (`START`, `LOGS`) while it runs."""
    wants = RUNNING_CALLBACKS.get(Dialect(task.dialect))
    return wants is not None and wants(task, event)


def error_envelope(dialect: Dialect, error: GatewayError, trace_id: str) -> dict[str, Any]:
    """`error` in the envelope of `dialect`."""
    return MODULES[dialect].error_envelope(error, trace_id)


__all__ = [
    "CALLBACK_LOGS",
    "LOGS",
    "MODULES",
    "RUNNING_CALLBACKS",
    "START",
    "Dialect",
    "DialectModule",
    "Links",
    "callback_on",
    "error_envelope",
    "render_callback",
]
