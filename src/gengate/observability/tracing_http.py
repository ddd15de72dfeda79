"""The span of each HTTP request, through the request observer's hooks (:mod:`.requests`), so
that requests are timed once. Added to the app only while tracing is on."""

from __future__ import annotations

from starlette.types import Scope

from gengate.api.trace import trace_id_of
from gengate.observability import tracing
from gengate.observability.requests import RequestObserver, RequestRecord

#: Where a request's span waits in its scope between the two hooks.
SPAN_KEY = "gengate.span"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class RequestSpans(RequestObserver):
    """A server span per HTTP request, current while the app answers it (so the submit span is
    its child), named `METHOD route-template` once the route is known."""

    def on_request_start(self, scope: Scope) -> None:
        started = tracing.start_server_span(
            trace_id_of(scope),
            _header(scope, b"traceparent"),
            **{"http.request.method": scope["method"], "url.path": scope["path"]},
        )
        if started is not None:
            scope[SPAN_KEY] = started

    def on_request(self, record: RequestRecord) -> None:
        started = record.scope.pop(SPAN_KEY, None)
        if started is None:
            return
        attributes: dict[str, str | int] = {"http.route": record.route}
        if record.key_id is not None:
            attributes["gengate.key_id"] = record.key_id
        if record.task_id is not None:
            attributes["gengate.task.id"] = record.task_id
        tracing.end_server_span(started, f"{record.method} {record.route}", record.status, **attributes)


def request_observers() -> tuple[RequestObserver, ...]:
    """The tracing observers of an app: none while tracing is off."""
    return (RequestSpans(),) if tracing.active() else ()
