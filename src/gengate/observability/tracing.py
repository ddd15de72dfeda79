"""OpenTelemetry tracing of a task's life, off unless the standard variables say where spans go.

With `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or an
`OTEL_TRACES_EXPORTER` other than `none`) set, :func:`setup` builds the SDK's tracer provider
(OTLP over HTTP/protobuf; the SDK reads the endpoint, headers, service name, resource and batch
variables itself) and every helper here makes spans. Without, nothing is set up: each helper
checks one module global and returns, so the hot paths build no span, context or dict.

The OpenTelemetry trace id *is* gengate's trace id: the UUID minted for each request (the
`X-Trace-Id` header and the `trace_id` of bodies and log lines), read as 32 hex digits. A
request's span starts the trace under that id (:class:`GatewayIds`), so one id finds the log
lines and the spans alike. The context of the submit span is stored with the task (W3C
`traceparent` text) and read back by the worker that claims it and the sender of its callbacks.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from contextvars import Token
from typing import ParamSpec, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

from gengate.domain.deliveries import Delivery
from gengate.domain.endings import Failed, Outcome
from gengate.domain.task import Task
from gengate.observability.context import current_trace_id
from gengate.observability.tracing_setup import ROOT_TRACE_ID, build_provider, otel_trace_id, wanted

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

#: The tracer while tracing is on; None (the default) turns every helper into a no-op.
_tracer: Tracer | None = None
_provider: TracerProvider | None = None
_PROPAGATOR = TraceContextTextMapPropagator()


def active() -> bool:
    return _tracer is not None


def setup(role: str, *, env: Mapping[str, str] | None = None, exporter: SpanExporter | None = None) -> bool:
    """Turn tracing on in this process when the environment asks for it (`exporter`: a test's,
    sent to synchronously); returns whether it is on. `role` (`api`, `worker`) names the
    process in the resource. `StartupError` for an exporter or protocol this build lacks."""
    global _tracer, _provider  # noqa: PLW0603 - one tracer per process, set at start
    env = os.environ if env is None else env
    if exporter is None and not wanted(env):
        return False
    _provider = build_provider(role, env, exporter)
    _tracer = _provider.get_tracer("gengate")
    log.info("tracing on: spans of this %s process are exported", role)
    return True


def shutdown() -> None:
    """Export what is pending and turn tracing off (also done at exit by the SDK)."""
    global _tracer, _provider
    provider, _tracer, _provider = _provider, None, None
    if provider is not None:
        provider.shutdown()


# -- contexts as text: stored with a task, sent upstream -------------------------------------
def traceparent_of() -> str | None:
    """The W3C `traceparent` of the current span (stored with a submitted task); None when
    tracing is off or no span is current."""
    return span_headers().get("traceparent")


def context_of(traceparent: str | None) -> Context | None:
    """The context a stored `traceparent` names, as a remote parent; None when there is none."""
    if not traceparent:
        return None
    ctx = _PROPAGATOR.extract({"traceparent": traceparent})
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def span_headers() -> dict[str, str]:
    """The current span's `traceparent` (and `tracestate`); none when tracing is off."""
    carrier: dict[str, str] = {}
    if _tracer is not None:
        _PROPAGATOR.inject(carrier)
    return carrier


def upstream_headers() -> dict[str, str]:
    """The `traceparent` of a call to an upstream: the current span's when tracing is on, else
    one derived from the running task's trace id (not sampled: nothing here was recorded)."""
    if carrier := span_headers():
        return carrier
    trace_id = otel_trace_id(current_trace_id())
    if not trace_id:
        return {}
    span_id = int.from_bytes(os.urandom(8), "big") or 1
    return {"traceparent": f"00-{trace_id:032x}-{span_id:016x}-00"}


# -- spans -------------------------------------------------------------------------------------
def traced(name: str) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Run the decorated coroutine function inside a span `name` (a child of the current one);
    with tracing off, one check and a plain call."""

    def decorate(function: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        @functools.wraps(function)
        async def run(*args: P.args, **kwargs: P.kwargs) -> T:
            tracer = _tracer
            if tracer is None:
                return await function(*args, **kwargs)
            with tracer.start_as_current_span(name):
                return await function(*args, **kwargs)

        return run

    return decorate


def annotate_task(task: Task) -> None:
    """The task's id and model on the current span; no-op when off."""
    if _tracer is None:
        return
    span = trace.get_current_span()
    span.set_attribute("gengate.task.id", task.id)
    span.set_attribute("gengate.model", task.model)


def claim_started() -> int | None:
    """When a claim began (ns), for its spans; None when tracing is off."""
    return time.time_ns() if _tracer is not None else None


def claim_span(task: Task, attempt: int, owner: str, started_ns: int | None) -> Context | None:
    """The span of one task's claim (begun at `started_ns`, ended now), a child of the task's
    stored submit context (a task submitted untraced starts a trace under its trace id);
    returns the context its run starts in. None when tracing is off."""
    if _tracer is None or started_ns is None:
        return None
    attributes = _task_attributes(task, attempt, {"gengate.worker": owner})
    span = _task_child(_tracer, "gengate.claim", task.trace_context, task.trace_id, attributes, started_ns)
    span.end()
    return trace.set_span_in_context(span)


def callback_span(
    delivery: Delivery, traceparent: str | None, trace_id: str | None
) -> AbstractContextManager[object]:
    """One callback attempt as a client span, a child of the task's stored submit context,
    current inside (answer it with :func:`answered`); when off, the shared context that does
    nothing (no generator made for every attempt)."""
    if _tracer is None:
        return _NO_SPAN
    attributes: dict[str, str | int] = {
        "gengate.task.id": delivery.task_id,
        "gengate.callback": delivery.id,
        "gengate.attempt": delivery.attempts + 1,
    }
    span = _task_child(_tracer, "gengate.callback", traceparent, trace_id, attributes, kind=SpanKind.CLIENT)
    return trace.use_span(span, end_on_exit=True)


def _task_child(  # noqa: PLR0917 - a span's parts
    tracer: Tracer,
    name: str,
    traceparent: str | None,
    trace_id: str | None,
    attributes: Attributes,
    start_ns: int | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
) -> Span:
    """A span of a task's life in this process: a child of its stored submit context, or, for a
    task submitted untraced, the root of a trace under the task's trace id."""
    parent = context_of(traceparent)
    with _root_trace_id(trace_id if parent is None else None):
        return tracer.start_span(
            name,
            context=parent if parent is not None else Context(),
            kind=kind,
            attributes=attributes,
            start_time=start_ns,
        )


_NO_SPAN = contextlib.nullcontext()


def run_span(
    parent: Context | None, task: Task, attempt: int, provider: str
) -> AbstractContextManager[object]:
    """A task's run, its span (a child of its claim's) current inside; when off, one shared
    context that does nothing (no generator made for every run)."""
    if _tracer is None or parent is None:
        return _NO_SPAN
    named = _task_attributes(task, attempt, {"gengate.provider": provider})
    return _tracer.start_as_current_span("gengate.run", context=parent, attributes=named)


def run_ended(outcome: Outcome) -> None:
    """How the run ended, on its span: `gengate.fail_code` and an error status on a failure."""
    if _tracer is None or not isinstance(outcome, Failed):
        return
    span = trace.get_current_span()
    span.set_attribute("gengate.fail_code", outcome.fail_code)
    span.set_status(Status(StatusCode.ERROR, outcome.fail_msg[:200]))


def _task_attributes(task: Task, attempt: int, more: dict[str, str]) -> dict[str, str | int]:
    return {"gengate.task.id": task.id, "gengate.model": task.model, "gengate.attempt": attempt, **more}


@contextlib.contextmanager
def client_span(name: str, attributes: Callable[[], Attributes]) -> Iterator[None]:
    """An outgoing call (to an upstream) as a client span, a child of the current one and
    current inside (answer it with :func:`answered`); `attributes` is called only when on."""
    if _tracer is None:
        yield
        return
    with _tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=attributes()):
        yield


def answered(status: int | None, error: str | None = None) -> None:
    """An outgoing call's HTTP status (an error for none or 4xx/5xx) on the current span, its
    client span; no-op when off."""
    if _tracer is None:
        return
    span = trace.get_current_span()
    if status is not None:
        span.set_attribute("http.response.status_code", status)
    if status is None or status >= 400:
        span.set_status(Status(StatusCode.ERROR, error or f"HTTP {status}"))


@contextlib.contextmanager
def _root_trace_id(trace_id: str | None) -> Iterator[None]:
    token = ROOT_TRACE_ID.set(otel_trace_id(trace_id))
    try:
        yield
    finally:
        ROOT_TRACE_ID.reset(token)


def start_server_span(
    trace_id: str, traceparent: str | None, **attributes: str | int
) -> tuple[Span, Token[Context]] | None:
    """An HTTP request's span, made current until :func:`end_server_span`: the root of the
    request's trace (trace id = the request's trace id), or the child of a caller's
    `traceparent` in that same trace (a relaying gengate's call). A caller's context in another
    trace is kept as a link. None when tracing is off."""
    if _tracer is None:
        return None
    caller = context_of(traceparent)
    parent: Context | None = None
    links: list[trace.Link] = []
    if caller is not None:
        remote = trace.get_current_span(caller).get_span_context()
        if remote.trace_id == otel_trace_id(trace_id):
            parent = caller
        else:
            links.append(trace.Link(remote))
    with _root_trace_id(trace_id if parent is None else None):
        span = _tracer.start_span(
            "HTTP",
            context=parent if parent is not None else Context(),
            kind=SpanKind.SERVER,
            attributes={**attributes, "gengate.trace_id": trace_id},
            links=links,
        )
    return span, otel_context.attach(trace.set_span_in_context(span))


def end_server_span(
    started: tuple[Span, Token[Context]], name: str, status: int, **attributes: str | int
) -> None:
    """End a request's span, named for its route, and make it no longer current."""
    span, token = started
    span.update_name(name)
    span.set_attribute("http.response.status_code", status)
    for key, value in attributes.items():
        span.set_attribute(key, value)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
    span.end()
    otel_context.detach(token)
