"""HTTP request durations, per method, route template and status.

An observer of the one request layer (:class:`~gengate.observability.requests.RequestLog`), so
it sees every request, the status hot path included. Counted in a
:class:`~gengate.observability.metrics_lite.LiteHistogram`: a prometheus-client `Histogram`
child takes two locks and walks its buckets on every observation, which on the status path cost
as much as the rest of the request layer. The record's fields are bounded whatever clients send
(route template, never the path; `OTHER` methods; `unmatched` routes).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from gengate.observability.metrics_lite import LiteHistogram
from gengate.observability.requests import RequestObserver, RequestRecord

NAME = "gengate_http_request_duration_seconds"
DOC = "Time from a request's arrival to the end of its response, by method, route template and status."
#: From a status read's fraction of a millisecond to a synchronous run's minutes.
HTTP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
LABELS = ("method", "route", "status")


class HttpMetrics(RequestObserver):
    def __init__(self, registry: CollectorRegistry) -> None:
        self._durations = LiteHistogram(NAME, DOC, LABELS, buckets=HTTP_BUCKETS, registry=registry)

    def on_request(self, record: RequestRecord) -> None:
        self._durations.labels(record.method, record.route, record.status).observe(record.duration_s)
