"""What a log line is about: the request being answered, or the task being run.

The request middleware sets a fresh :class:`RequestNotes` per HTTP request; the code that
learns the key or the task on the way (authentication, the task service) writes it there with
:func:`note_key` / :func:`note_task`, so the request's line can name them and every line logged
meanwhile carries them. One context variable and an attribute write: nothing is bound or
copied on the hot path unless a line is written. A worker binds its task in a
context variable of its own instead (:func:`bound_task`).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any


class RequestNotes:
    """The trace id of the request being answered, and its key and task once known."""

    __slots__ = ("client_gone", "key_id", "status", "task_id", "trace_id")

    def __init__(self, trace_id: str) -> None:
        self.trace_id = trace_id
        #: The status sent, once the response has started (0 before).
        self.status = 0
        self.key_id: str | None = None
        self.task_id: str | None = None
        #: The client left before its body arrived; the app said so in a line of its own.
        self.client_gone = False


REQUEST: ContextVar[RequestNotes | None] = ContextVar("gengate_request", default=None)


def note_key(key_id: str) -> None:
    """The request being answered is this key's (no-op outside a request)."""
    notes = REQUEST.get()
    if notes is not None:
        notes.key_id = key_id


def note_status(status: int) -> None:
    """The response to the request being answered starts with this status (no-op outside a
    request). The two layers that send every response call it, the hot path and the trace
    middleware, so the request layer needs no send wrapper of its own."""
    notes = REQUEST.get()
    if notes is not None:
        notes.status = status


def note_task(task_id: str) -> None:
    """The request being answered is about this task (no-op outside a request)."""
    notes = REQUEST.get()
    if notes is not None:
        notes.task_id = task_id


def note_client_gone() -> None:
    """The client of the request being answered left before sending its whole body: the line
    that says so is the request's one line (no access line besides)."""
    notes = REQUEST.get()
    if notes is not None:
        notes.client_gone = True


def add_request_notes(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the request's trace, key and task ids on each line logged while it
    is answered (values bound explicitly win)."""
    notes = REQUEST.get()
    if notes is not None:
        event.setdefault("trace_id", notes.trace_id)
        if notes.key_id is not None:
            event.setdefault("key_id", notes.key_id)
        if notes.task_id is not None:
            event.setdefault("task_id", notes.task_id)
    return event


#: The trace id of the task being worked on (a run, a callback), for the headers sent on its behalf.
TASK_TRACE: ContextVar[str | None] = ContextVar("gengate_task_trace", default=None)


#: The fields of the task being worked on, for every line logged meanwhile (:func:`add_task_fields`).
TASK_FIELDS: ContextVar[dict[str, Any] | None] = ContextVar("gengate_task_fields", default=None)


class bound_task:
    """Every line logged inside (this task's coroutine, what it awaits and the tasks it
    spawns) names the task and its trace id, and requests sent on its behalf carry the trace
    id (:func:`trace_headers`); restored on the way out. Two context variables of ours, where
    structlog's `bound_contextvars` made and reset one per field: it cost 6.7 µs a task. A
    class, not a generator context manager: entered once per task run and per callback
    attempt, it costs half as much (2.1 against 4.1 µs here)."""

    __slots__ = ("_fields", "_token", "_trace_id", "_values")

    def __init__(self, task_id: str, trace_id: str | None, **more: Any) -> None:
        values: dict[str, Any] = {**(TASK_FIELDS.get() or {}), "task_id": task_id, **more}
        if trace_id:
            values["trace_id"] = trace_id
        self._values = values
        self._trace_id = trace_id

    def __enter__(self) -> None:
        self._fields = TASK_FIELDS.set(self._values)
        self._token = TASK_TRACE.set(self._trace_id)

    def __exit__(self, *_exc: object) -> None:
        TASK_TRACE.reset(self._token)
        TASK_FIELDS.reset(self._fields)


def add_task_fields(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the fields of the task being worked on (values given explicitly win)."""
    fields = TASK_FIELDS.get()
    if fields:
        for name, value in fields.items():
            event.setdefault(name, value)
    return event


def current_trace_id() -> str | None:
    """The trace id of the task being worked on, else of the request being answered."""
    trace_id = TASK_TRACE.get()
    if trace_id is None:
        notes = REQUEST.get()
        trace_id = notes.trace_id if notes is not None else None
    return trace_id


def trace_headers() -> dict[str, str]:
    """Headers that carry the current trace to another service (an upstream): `X-Trace-Id`."""
    trace_id = current_trace_id()
    return {"X-Trace-Id": trace_id} if trace_id else {}
