"""Counters and histograms counted in plain numbers and lists, rendered at scrape time.

prometheus-client's `Counter` and `Histogram` take a lock on every update, and a histogram walks
its buckets in Python: 0.7 us an increment and 1.5 us an observation, and every task and every
callback makes several. Here an increment is one addition and an observation a bisect and two
additions (about 0.3 us), made on the event loop's thread. A scrape, from any thread, copies each
series first: it sees whole numbers, if a moment old. The exposition is prometheus-client's own
(families rendered by `generate_latest`), less the `_created` samples.

Label values may be any objects that hash and compare as their text does (a `StrEnum` member
and its value, say): they are made text at scrape time, not at each update.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Generic, TypeVar, cast

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

_go_string = cast(Callable[[float], str], floatToGoString)
S = TypeVar("S")


class CounterSeries:
    """One label set's count."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class HistogramSeries:
    """One label set's observations: the count in each bucket (+Inf last), then their sum."""

    __slots__ = ("_bounds", "counts")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0.0] * (len(bounds) + 2)

    def observe(self, value: float) -> None:
        counts = self.counts
        counts[bisect_left(self._bounds, value)] += 1
        counts[-1] += value


class _Family(Collector, Generic[S]):
    """A metric's label sets and their series; an unlabelled metric has its one series at once.
    Registered last, once the subclass has set what `describe` needs."""

    def __init__(
        self, name: str, doc: str, labelnames: Sequence[str] = (), *, registry: CollectorRegistry
    ) -> None:
        self._name = name
        self._doc = doc
        self._labelnames = tuple(labelnames)
        self._series: dict[tuple[Hashable, ...], S] = {}
        if not self._labelnames:
            self._series[()] = self._new_series()
        registry.register(self)

    def _new_series(self) -> S:
        raise NotImplementedError

    def labels(self, *values: Hashable) -> S:
        series = self._series.get(values)
        if series is None:
            if len(values) != len(self._labelnames):
                raise ValueError(f"{self._name} takes the labels {self._labelnames}")
            series = self._series[values] = self._new_series()
        return series


class LiteCounter(_Family[CounterSeries]):
    """A counter named without its `_total`, as prometheus-client's `Counter` is."""

    def _new_series(self) -> CounterSeries:
        return CounterSeries()

    def inc(self, amount: float = 1.0) -> None:
        self._series[()].inc(amount)

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self._name, self._doc, labels=self._labelnames)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self._name, self._doc, labels=self._labelnames)
        for values, series in list(self._series.items()):
            family.add_metric([str(value) for value in values], series.value)
        yield family


class LiteHistogram(_Family[HistogramSeries]):
    """A histogram with prometheus-client's bucket rule: a value counts in every bucket whose
    bound is at or above it."""

    def __init__(
        self,
        name: str,
        doc: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self._bounds = tuple(float(bound) for bound in buckets)
        #: Each bucket's `le` as prometheus-client writes it, +Inf last.
        self._le = tuple(_go_string(bound) for bound in (*self._bounds, float("inf")))
        super().__init__(name, doc, labelnames, registry=registry)

    def _new_series(self) -> HistogramSeries:
        return HistogramSeries(self._bounds)

    def observe(self, value: float) -> None:
        self._series[()].observe(value)

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self._name, self._doc, labels=self._labelnames)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self._name, self._doc, labels=self._labelnames)
        for values, series in list(self._series.items()):
            counts = series.counts[:]
            cumulative, buckets = 0.0, []
            for le, count in zip(self._le, counts[:-1], strict=True):
                cumulative += count
                buckets.append((le, cumulative))
            family.add_metric([str(value) for value in values], buckets, counts[-1])
        yield family
