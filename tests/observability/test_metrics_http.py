"""The HTTP duration histogram, counted by hand for speed, reads exactly as prometheus-client's
own `Histogram` given the same observations (bounds, cumulative counts, sums, +Inf)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from gengate.observability.metrics_http import DOC, HTTP_BUCKETS, NAME, HttpMetrics
from gengate.observability.requests import RequestRecord

DURATIONS = (0.0001, 0.0005, 0.0005001, 0.003, 0.003, 0.75, 299.0, 300.0, 301.0, 1e6)


def record(method: str, route: str, status: int, duration_s: float) -> RequestRecord:
    scope: Any = {}
    return RequestRecord(method, route, status, duration_s, "trace", None, None, scope)


def test_exposition_matches_prometheus_clients_histogram() -> None:
    ours_registry, theirs_registry = CollectorRegistry(), CollectorRegistry()
    ours = HttpMetrics(ours_registry)
    theirs = Histogram(
        NAME, DOC, ["method", "route", "status"], registry=theirs_registry, buckets=HTTP_BUCKETS
    )
    for status, route in ((200, "/api/v1/statusTask/{model}"), (404, "unmatched")):
        for duration in DURATIONS:
            ours.on_request(record("GET", route, status, duration))
            theirs.labels("GET", route, str(status)).observe(duration)
    expected = [line for line in generate_latest(theirs_registry).splitlines() if b"_created" not in line]
    assert generate_latest(ours_registry).splitlines() == expected
