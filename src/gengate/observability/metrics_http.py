"""HTTP request durations, per method, route template and status.

An observer of the one request layer (:class:`~gengate.observability.requests.RequestLog`), so
it sees every request, the status hot path included; each label set's child is bound once and
kept, so an observation is a dict lookup and a bucket add. The record's fields are bounded
whatever clients send (route template, never the path; `OTHER` methods; `unmatched` routes).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

from gengate.observability.requests import RequestObserver, RequestRecord

#: From a status read's fraction of a millisecond to a synchronous run's minutes.
HTTP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class HttpMetrics(RequestObserver):
    def __init__(self, registry: CollectorRegistry) -> None:
        self.duration = Histogram(
            "gengate_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
            buckets=HTTP_BUCKETS,
        )
        self._children: dict[tuple[str, str, int], Histogram] = {}

    def on_request(self, record: RequestRecord) -> None:
        labels = (record.method, record.route, record.status)
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = self.duration.labels(
                record.method, record.route, str(record.status)
            )
        child.observe(record.duration_s)
