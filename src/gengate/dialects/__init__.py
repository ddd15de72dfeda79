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

from collections.abc import Mapping
from typing import Any, Protocol

from gengate.dialects import apixo, kie, xhuo
from gengate.dialects.links import Links
from gengate.domain.dialect import Dialect
from gengate.domain.errors import GatewayError
from gengate.domain.task import Task


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
}


def render_callback(dialect: Dialect | str, task: Task, links: Links) -> bytes:
    """The callback body of `task` in `dialect` (the one it was created in)."""
    return MODULES[Dialect(dialect)].callback_body(task, links)


def error_envelope(dialect: Dialect, error: GatewayError, trace_id: str) -> dict[str, Any]:
    """`error` in the envelope of `dialect`."""
    return MODULES[dialect].error_envelope(error, trace_id)


__all__ = ["MODULES", "Dialect", "DialectModule", "Links", "error_envelope", "render_callback"]
