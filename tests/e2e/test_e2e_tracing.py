"""Tracing across real processes: an API process (`gengate serve --workers 0`), a separate
`gengate worker` on the same PostgreSQL, and an upstream gengate the task is relayed to, all
exporting OTLP/HTTP to a collector written here; the task's callback goes to a receiver here.

One trace, under the task's trace id, must link every span to its parent across the three
processes: HTTP -> submit -> claim -> run -> provider call -> the upstream's HTTP span, and
submit -> callback attempt, with the W3C `traceparent` the upstream and the receiver saw
naming the spans that called them.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import test_e2e_cluster as cluster
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanMessage

Worker = cluster.Worker
#: The cluster tests' fixture: `gengate worker` processes, stopped after the test.
start_worker = cluster.start_worker
GengateServer = Any
Launcher = Any
UPSTREAM_KEY_ENV = "TRACING_TEST_UPSTREAM_KEY"
SPANS_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Exported:
    """One span as the collector received it, ids in hex."""

    name: str
    kind: int
    trace_id: str
    span_id: str
    parent: str
    service: str
    role: str
    pid: int
    attributes: dict[str, Any]
    links: tuple[tuple[str, str], ...]


def _value(value: AnyValue) -> Any:
    return getattr(value, value.WhichOneof("value") or "string_value")


def _decode(body: bytes) -> list[Exported]:
    request = ExportTraceServiceRequest.FromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    Exported(
                        name=span.name,
                        kind=span.kind,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent=span.parent_span_id.hex(),
                        service=resource.get("service.name", ""),
                        role=resource.get("gengate.role", ""),
                        pid=int(resource.get("process.pid", 0)),
                        attributes={kv.key: _value(kv.value) for kv in span.attributes},
                        links=tuple((link.trace_id.hex(), link.span_id.hex()) for link in span.links),
                    )
                )
    return spans


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    spans: list[Exported]
    callbacks: list[dict[str, str]]
    lock: threading.Lock


class _Handler(BaseHTTPRequestHandler):
    """`POST /v1/traces`: OTLP/HTTP protobuf, kept decoded; `POST /callback`: headers kept."""

    server: _Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        with self.server.lock:
            if self.path == "/v1/traces":
                self.server.spans.extend(_decode(body))
            else:
                self.server.callbacks.append({name.lower(): value for name, value in self.headers.items()})
        answer = ExportTraceServiceResponse().SerializeToString() if self.path == "/v1/traces" else b"{}"
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Collector:
    """The OTLP collector and the callback receiver, on one loopback server of this process."""

    server: _Server

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def spans(self) -> list[Exported]:
        with self.server.lock:
            return list(self.server.spans)

    def callbacks(self) -> list[dict[str, str]]:
        with self.server.lock:
            return list(self.server.callbacks)

    def wait(self, what: str, ready: Callable[[], Any]) -> Any:
        deadline = time.monotonic() + SPANS_TIMEOUT_S
        while not (found := ready()):
            assert time.monotonic() < deadline, f"{what} never came; spans: {self.spans()}"
            time.sleep(0.05)
        return found


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.spans, server.callbacks, server.lock = [], [], threading.Lock()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Collector(server)
    server.shutdown()
    server.server_close()


def _otel_env(collector: Collector, service: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_SERVICE_NAME": service,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }


def _relay_config(upstream_url: str) -> str:
    return f"""\
[providers.up]
kind = "apixo"
base_url = "{upstream_url}"
api_key_env = "{UPSTREAM_KEY_ENV}"
poll_initial_s = 0.05
poll_max_s = 0.25
retry_initial_s = 0.01

[models.fox]
providers = ["up:demo-image"]
modes = ["text-to-image"]
max_attempts = 1
"""


def test_one_trace_links_request_worker_upstream_and_callback(
    pg_url: str,
    start_gengate: Launcher,
    start_worker: Callable[..., Worker],
    collector: Collector,
    tmp_path: Path,
) -> None:
    upstream = start_gengate("upstream", env=_otel_env(collector, "gengate-upstream"))
    upstream_key = upstream.create_key("relay")["key"]
    config = tmp_path / "relay.toml"
    config.write_text(_relay_config(upstream.base_url))
    env = {
        **_otel_env(collector, "gengate"),
        "GENGATE_DATABASE_URL": pg_url,
        "GENGATE_WEBHOOK_ALLOW": "127.0.0.0/8",
        UPSTREAM_KEY_ENV: upstream_key,
    }
    api = start_gengate("api", workers=0, env=env, extra_args=("--config", str(config)))
    worker = start_worker(api.data_dir, env, "--config", str(config), "--concurrency", "2")
    key = api.create_key("traced")["key"]

    response = api.submit(
        key,
        "fox",
        {"prompt": "a red fox", "width": 16, "height": 16},
        callback_url=f"{collector.url}/callback",
    )
    assert response.status_code == 200, response.text
    task_id = response.json()["data"]["taskId"]
    trace_id = response.headers["x-trace-id"].replace("-", "")
    assert api.wait_task(key, "fox", task_id, timeout=30)["state"] == "success"
    [callback] = collector.wait("the callback", collector.callbacks)

    def spans_of_trace() -> dict[str, list[Exported]]:
        named: dict[str, list[Exported]] = {}
        for span in collector.spans():
            if span.trace_id == trace_id:
                named.setdefault(span.name, []).append(span)
        return named

    wanted = (
        "POST /api/v1/generateTask/{model}",
        "gengate.submit",
        "gengate.claim",
        "gengate.run",
        "POST /api/v1/generateTask/demo-image",
        "gengate.callback",
    )

    def complete() -> dict[str, list[Exported]]:
        # Each name from our own processes: the upstream has spans of the same names (its own
        # run), exported on its own schedule, so seeing a name from it proves nothing of ours.
        named = spans_of_trace()
        ours_found = all(any(s.service == "gengate" for s in named.get(name, ())) for name in wanted)
        upstream_http = [s for s in named.get(wanted[0], ()) if s.service == "gengate-upstream"]
        return named if ours_found and upstream_http else {}

    named = collector.wait("every span of the trace", complete)
    ours = {name: [s for s in found if s.service == "gengate"] for name, found in named.items()}
    [http] = ours[wanted[0]]
    [submit] = ours["gengate.submit"]
    [claim] = ours["gengate.claim"]
    [run] = ours["gengate.run"]
    [call] = ours["POST /api/v1/generateTask/demo-image"]
    [attempt] = ours["gengate.callback"]
    [their_http] = [s for s in named[wanted[0]] if s.service == "gengate-upstream"]

    # The API process: the request's span is the trace's root, under the task's trace id.
    api_pid = api.process.pid
    assert (http.parent, http.pid, http.role, http.kind) == (
        "",
        api_pid,
        "serve",
        SpanMessage.SPAN_KIND_SERVER,
    )
    assert http.attributes["http.response.status_code"] == 200
    assert http.attributes["gengate.task.id"] == task_id
    assert (submit.parent, submit.pid, submit.attributes["gengate.task.id"]) == (
        http.span_id,
        api_pid,
        task_id,
    )
    # The worker, another process, continues from the context stored with the task.
    worker_pid = worker.process.pid
    assert worker_pid != api_pid
    assert (claim.parent, claim.pid, claim.role) == (submit.span_id, worker_pid, "worker")
    assert (run.parent, run.pid, run.attributes["gengate.provider"]) == (
        claim.span_id,
        worker_pid,
        "up:demo-image",
    )
    assert (call.parent, call.pid, call.kind) == (run.span_id, worker_pid, SpanMessage.SPAN_KIND_CLIENT)
    # The upstream joined the trace as the provider call's child: it got that `traceparent`.
    assert their_http.parent == call.span_id
    assert their_http.pid == upstream.process.pid
    # The callback attempt, sent by the API process, hangs off the submit and named itself.
    assert (attempt.parent, attempt.pid, attempt.kind) == (
        submit.span_id,
        api_pid,
        SpanMessage.SPAN_KIND_CLIENT,
    )
    assert attempt.attributes["http.response.status_code"] == 200
    version, sent_trace, sent_span, flags = callback["traceparent"].split("-")
    assert (version, sent_trace, sent_span) == ("00", trace_id, attempt.span_id)
    assert int(flags, 16) & 1, "the attempt was sampled, and said so"
    assert callback["x-trace-id"].replace("-", "") == trace_id
