"""HTTP request durations, per method, route template and status.

An observer of the one request layer (:class:`~gengate.observability.requests.RequestLog`), so
it sees every request, the status hot path included. Counted here and rendered as a Prometheus
histogram at scrape time: a `Histogram` child takes two locks and walks its buckets on every
observation, which on the status path cost as much as the rest of the request layer; here an
observation is a dict lookup, a bisect and two additions on the event loop's thread. The
record's fields are bounded whatever clients send (route template, never the path; `OTHER`
methods; `unmatched` routes).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import cast

from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from gengate.observability.requests import RequestObserver, RequestRecord

NAME = "gengate_http_request_duration_seconds"
DOC = "Time from a request's arrival to the end of its response, by method, route template and status."
#: From a status read's fraction of a millisecond to a synchronous run's minutes.
HTTP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
LABELS = ("method", "route", "status")
#: Each bucket's `le` as prometheus-client writes it, +Inf last.
_LE: tuple[str, ...] = tuple(
    cast(Callable[[float], str], floatToGoString)(bound) for bound in (*HTTP_BUCKETS, float("inf"))
)


class HttpMetrics(RequestObserver, Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        #: Per label set: the count in each bucket (the last is +Inf only), then the sum.
        self._series: dict[tuple[str, str, int], list[float]] = {}
        registry.register(self)

    def on_request(self, record: RequestRecord) -> None:
        labels = (record.method, record.route, record.status)
        series = self._series.get(labels)
        if series is None:
            series = self._series[labels] = [0.0] * (len(HTTP_BUCKETS) + 2)
        series[bisect_left(HTTP_BUCKETS, record.duration_s)] += 1
        series[-1] += record.duration_s

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(NAME, DOC, labels=LABELS)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(NAME, DOC, labels=LABELS)
        # A copy of each series: a scrape from another thread sees whole numbers, if a moment old.
        for (method, route, status), series in list(self._series.items()):
            counts = series[:]
            cumulative, buckets = 0.0, []
            for le, count in zip(_LE, counts[:-1], strict=True):
                cumulative += count
                buckets.append((le, cumulative))
            family.add_metric([method, route, str(status)], buckets, counts[-1])
        yield family
