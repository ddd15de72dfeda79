"""Building the tracer provider from the standard OTEL_* variables: which exporter, which
sampler, which resource, and trace ids that are gengate's own (see :mod:`.tracing`)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from contextvars import ContextVar

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult, TraceIdRatioBased
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.util.types import Attributes

from gengate.startup import StartupError

#: The trace id the next root span takes (our trace id), set only around starting one.
ROOT_TRACE_ID: ContextVar[int] = ContextVar("gengate_root_trace_id", default=0)
_EXPORTERS = ("otlp", "otlp_proto_http", "console")
_LOW_56 = (1 << 56) - 1


def wanted(env: Mapping[str, str]) -> bool:
    """Whether the standard variables ask for traces: an OTLP endpoint, or an exporter named."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def build_provider(role: str, env: Mapping[str, str], exporter: SpanExporter | None = None) -> TracerProvider:
    """The provider of a process whose environment asks for traces (`exporter`: a test's, sent
    to synchronously). `StartupError` for an exporter or protocol this build lacks."""
    provider = TracerProvider(sampler=sampler_from(env), resource=_resource(role), id_generator=GatewayIds())
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        for made in _exporters(env):
            provider.add_span_processor(BatchSpanProcessor(made))
    return provider


def _resource(role: str) -> Resource:
    """The SDK's resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES), named `gengate` when
    the variables name no service, with the process's role (`serve`, `worker`) and pid."""
    resource = Resource.create({"gengate.role": role, "process.pid": os.getpid()})
    name = resource.attributes.get("service.name")
    if not isinstance(name, str) or name.startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "gengate"}))
    return resource


def _exporters(env: Mapping[str, str]) -> list[SpanExporter]:
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol and protocol.strip().lower() != "http/protobuf":
        raise StartupError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: gengate exports traces over http/protobuf "
            "only (a collector's port 4318)."
        )
    made: list[SpanExporter] = []
    for named in (env.get("OTEL_TRACES_EXPORTER") or "otlp").lower().split(","):
        name = named.strip()
        if name in ("otlp", "otlp_proto_http"):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415

            made.append(OTLPSpanExporter())
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter  # noqa: PLC0415

            made.append(ConsoleSpanExporter())
        elif name:
            raise StartupError(
                f"OTEL_TRACES_EXPORTER={name}: gengate exports traces with one of {', '.join(_EXPORTERS)}."
            )
    return made


# -- trace ids and sampling ---------------------------------------------------------------
def otel_trace_id(trace_id: str | None) -> int:
    """Our trace id (a UUID) as an OpenTelemetry trace id; 0 (invalid) for none, or for an id a
    caller chose that is not 32 hex digits (its spans then get a random trace id)."""
    digits = trace_id.replace("-", "") if trace_id else ""
    if len(digits) != 32:
        return 0
    try:
        return int(digits, 16)
    except ValueError:
        return 0


class GatewayIds(IdGenerator):
    """Random span ids; a root span's trace id is the request's (or the task's) trace id."""

    _random = RandomIdGenerator()

    def generate_span_id(self) -> int:
        return self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        return ROOT_TRACE_ID.get() or self._random.generate_trace_id()

    def is_trace_id_random(self) -> bool:
        return True  # a version 4 UUID's last 7 bytes are random


class UuidRatioSampler(TraceIdRatioBased):
    """`traceidratio` over the 56 random low bits of a trace id. The SDK's own reads 64 bits, and
    in a version 4 UUID the top two of those are fixed (its variant): it would keep no trace at
    all at a ratio of 0.5 or less, and every trace from 0.75 up."""

    def __init__(self, rate: float) -> None:
        super().__init__(rate)
        self._bound_56 = round(rate * (_LOW_56 + 1))

    def should_sample(  # noqa: PLR0917 - the SDK's signature
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        keep = trace_id & _LOW_56 < self._bound_56
        parent = trace.get_current_span(parent_context).get_span_context() if parent_context else None
        return SamplingResult(
            Decision.RECORD_AND_SAMPLE if keep else Decision.DROP,
            attributes if keep else None,
            parent.trace_state if parent is not None else None,
        )

    def get_description(self) -> str:
        return f"UuidRatioSampler{{{self.rate}}}"


def sampler_from(env: Mapping[str, str]) -> Sampler | None:
    """OTEL_TRACES_SAMPLER as the SDK reads it, with the ratio samplers over 56 bits; None lets
    the SDK read the other samplers itself."""
    name = env.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if name not in ("traceidratio", "parentbased_traceidratio"):
        return None
    try:
        rate = float(env.get("OTEL_TRACES_SAMPLER_ARG", "1"))
    except ValueError:
        rate = 1.0
    ratio = UuidRatioSampler(min(max(rate, 0.0), 1.0))
    return ratio if name == "traceidratio" else ParentBased(ratio)
