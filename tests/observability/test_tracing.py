"""Tracing in one process: off unless the standard variables ask for it (and then the hot paths
make no span at all), the spans of a task in an in-process gateway and their links, a caller's
`traceparent` joined or linked, the `traceparent` sent upstream with tracing on or off, and a
ratio sampler that keeps the share it is asked for of UUID trace ids."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, TraceIdRatioBased
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gengate.domain.ids import new_trace_id
from gengate.observability import tracing
from gengate.observability.context import bound_task
from gengate.observability.tracing_http import RequestSpans
from gengate.observability.tracing_setup import UuidRatioSampler, build_provider, sampler_from, wanted
from gengate.runtime import Gateway
from gengate.startup import StartupError

ECHO = {"mode": "echo", "prompt": "hi"}


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process, spans kept in memory (set up before the app is built)."""
    exporter = InMemorySpanExporter()
    assert tracing.setup("test", exporter=exporter)
    yield exporter
    tracing.shutdown()


def by_name(finished: tuple[ReadableSpan, ...] | list[ReadableSpan]) -> dict[str, ReadableSpan]:
    named = {}
    for span in finished:
        assert span.name not in named, f"two spans named {span.name}"
        named[span.name] = span
    return named


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    context = span.get_span_context()
    assert context is not None
    return context.span_id


def trace_id_of(span: ReadableSpan) -> str:
    context = span.get_span_context()
    assert context is not None
    return str(uuid.UUID(int=context.trace_id))


async def submit(http: httpx.AsyncClient, key: str) -> httpx.Response:
    body = {"request_type": "async", "input": ECHO}
    response = await http.post(
        "/api/v1/generateTask/demo-echo", json=body, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200, response.text
    return response


async def finished(gateway: Gateway, task_id: str) -> None:
    task = await gateway.store.get_task(task_id)
    assert task is not None
    ended = await gateway.tasks.wait_until_done(task, 30)
    assert ended.state.is_terminal()


# -- off by default ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "gengate"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_tracing_is_on_only_where_the_standard_variables_ask(env: dict[str, str], on: bool) -> None:
    assert wanted(env) is on


def test_without_the_variables_nothing_is_set_up() -> None:
    assert not tracing.setup("serve", env={})
    assert not tracing.active()
    assert tracing.traceparent_of() is None
    assert tracing.span_headers() == {}


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, "OTEL_TRACES_EXPORTER=jaeger"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "grpc"),
    ],
)
def test_an_exporter_this_build_lacks_is_a_startup_error(env: dict[str, str], named: str) -> None:
    with pytest.raises(StartupError, match=named):
        tracing.setup("serve", env=env)
    assert not tracing.active()


def test_the_service_is_gengate_unless_the_variables_name_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    plain = build_provider("worker", {}, InMemorySpanExporter())
    monkeypatch.setenv("OTEL_SERVICE_NAME", "gengate-eu")
    named = build_provider("worker", {}, InMemorySpanExporter())
    for provider in (plain, named):
        provider.shutdown()
    assert (plain.resource.attributes["service.name"], plain.resource.attributes["gengate.role"]) == (
        "gengate",
        "worker",
    )
    assert named.resource.attributes["service.name"] == "gengate-eu"


async def test_with_tracing_off_the_hot_paths_make_no_span(
    monkeypatch: pytest.MonkeyPatch, gateway: Gateway, http: httpx.AsyncClient, api_key: str
) -> None:
    def forbidden(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("a span or a context was made with tracing off")

    monkeypatch.setattr(SdkTracer, "start_span", forbidden)
    monkeypatch.setattr(trace.NonRecordingSpan, "__init__", forbidden)
    monkeypatch.setattr(TraceContextTextMapPropagator, "inject", forbidden)
    monkeypatch.setattr(TraceContextTextMapPropagator, "extract", forbidden)
    assert not any(isinstance(o, RequestSpans) for o in gateway.api_context().request_observers)
    task_id = (await submit(http, api_key)).json()["data"]["taskId"]
    await finished(gateway, task_id)
    status = await http.get(
        f"/api/v1/statusTask/demo-echo?taskId={task_id}", headers={"Authorization": f"Bearer {api_key}"}
    )
    assert status.json()["data"]["state"] == "success"
    assert await gateway.store.trace_context(task_id) is None


# -- a task's spans ----------------------------------------------------------------------------
async def test_a_task_is_one_trace_from_its_request_to_its_run(
    spans: InMemorySpanExporter, gateway: Gateway, http: httpx.AsyncClient, api_key: str
) -> None:
    response = await submit(http, api_key)
    task_id = response.json()["data"]["taskId"]
    await finished(gateway, task_id)
    named = by_name([s for s in spans.get_finished_spans() if s.name != "GET /api/v1/statusTask/{model}"])
    request = named["POST /api/v1/generateTask/{model}"]
    submitted, claim, run = named["gengate.submit"], named["gengate.claim"], named["gengate.run"]

    # One id: the trace is the request's trace id, as the client and the log lines see it.
    assert {trace_id_of(s) for s in (request, submitted, claim, run)} == {response.headers["x-trace-id"]}
    assert request.kind is SpanKind.SERVER
    assert request.parent is None
    assert request.attributes is not None
    assert request.attributes["http.route"] == "/api/v1/generateTask/{model}"
    assert request.attributes["http.response.status_code"] == 200
    assert request.attributes["gengate.task.id"] == task_id
    assert parent_of(submitted) == span_id(request)
    assert parent_of(claim) == span_id(submitted)
    assert parent_of(run) == span_id(claim)
    assert run.attributes is not None
    assert (run.attributes["gengate.task.id"], run.attributes["gengate.attempt"]) == (task_id, 1)
    # The submit's context went into the store with the task: that is how a worker elsewhere finds it.
    stored = await gateway.store.trace_context(task_id)
    assert stored == f"00-{submitted.context.trace_id:032x}-{span_id(submitted):016x}-03"


async def test_a_failed_run_is_an_error_on_its_span(
    spans: InMemorySpanExporter, gateway: Gateway, http: httpx.AsyncClient, api_key: str
) -> None:
    body = {"request_type": "async", "input": {**ECHO, "fail_code": "CONTENT_VIOLATION"}}
    response = await http.post(
        "/api/v1/generateTask/demo-echo", json=body, headers={"Authorization": f"Bearer {api_key}"}
    )
    await finished(gateway, response.json()["data"]["taskId"])
    run = by_name(spans.get_finished_spans())["gengate.run"]
    assert run.attributes is not None
    assert run.attributes["gengate.fail_code"] == "CONTENT_VIOLATION"
    assert run.status.status_code is trace.StatusCode.ERROR


def test_a_callers_traceparent_in_the_same_trace_is_the_parent_else_a_link(
    spans: InMemorySpanExporter,
) -> None:
    ours = new_trace_id()
    same = f"00-{ours.replace('-', '')}-00f067aa0ba902b7-01"
    other = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    for caller in (same, other, "garbage", None):
        started = tracing.start_server_span(ours, caller)
        assert started is not None
        tracing.end_server_span(started, "GET /x", 200)
    joined, linked, garbled, plain = spans.get_finished_spans()
    assert {trace_id_of(s) for s in (joined, linked, garbled, plain)} == {ours}
    assert parent_of(joined) == 0x00F067AA0BA902B7
    assert joined.parent is not None
    assert joined.parent.is_remote
    assert (linked.parent, garbled.parent, plain.parent) == (None, None, None)
    [link] = linked.links
    assert (link.context.trace_id, link.context.span_id) == (
        0x4BF92F3577B34DA6A3CE929D0E0E4736,
        0x00F067AA0BA902B7,
    )
    assert not garbled.links


# -- what goes upstream --------------------------------------------------------------------------
def test_with_tracing_off_the_upstream_traceparent_comes_from_the_task_trace_id() -> None:
    trace_id = new_trace_id()
    assert tracing.upstream_headers() == {}  # no task, no request: nothing to carry
    with bound_task("task_x", trace_id):
        first, second = tracing.upstream_headers(), tracing.upstream_headers()
    version, sent_trace, parent, flags = first["traceparent"].split("-")
    assert (version, sent_trace, flags) == ("00", trace_id.replace("-", ""), "00")
    assert len(parent) == 16
    assert int(parent, 16) != 0
    assert second["traceparent"] != first["traceparent"]  # a fresh parent id per call
    with bound_task("task_x", "a-caller-chose-this"):
        assert tracing.upstream_headers() == {}  # not a trace id W3C can carry


def test_with_tracing_on_the_upstream_traceparent_names_the_call_span(spans: InMemorySpanExporter) -> None:
    with bound_task("task_x", new_trace_id()), tracing.client_span("POST /up", dict):
        sent = tracing.upstream_headers()["traceparent"]
        tracing.answered(503)
    [call] = spans.get_finished_spans()
    assert sent == f"00-{call.context.trace_id:032x}-{span_id(call):016x}-03"
    assert call.kind is SpanKind.CLIENT
    assert call.status.status_code is trace.StatusCode.ERROR


# -- sampling ----------------------------------------------------------------------------------
def test_the_ratio_sampler_keeps_the_asked_share_of_uuid_trace_ids() -> None:
    rng = random.Random(18)
    ids = [uuid.UUID(bytes=rng.randbytes(16), version=4).int for _ in range(4000)]

    def kept(sampler: Any) -> float:
        decisions = [sampler.should_sample(None, trace_id, "x").decision for trace_id in ids]
        return decisions.count(Decision.RECORD_AND_SAMPLE) / len(ids)

    # The SDK's own sampler reads the UUID's fixed variant bits: nothing at a ratio of 0.5.
    assert kept(TraceIdRatioBased(0.5)) == 0
    for rate in (0.1, 0.5, 0.9):
        assert abs(kept(UuidRatioSampler(rate)) - rate) < 0.03
    assert kept(UuidRatioSampler(0.0)) == 0
    assert kept(UuidRatioSampler(1.0)) == 1


def test_the_ratio_samplers_of_the_variables_are_ours() -> None:
    assert sampler_from({}) is None  # the SDK reads the others itself
    assert sampler_from({"OTEL_TRACES_SAMPLER": "always_off"}) is None
    plain = sampler_from({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"})
    assert isinstance(plain, UuidRatioSampler)
    assert plain.rate == 0.25
    parented = sampler_from({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio"})
    assert parented is not None
    assert "UuidRatioSampler{1.0}" in parented.get_description()
