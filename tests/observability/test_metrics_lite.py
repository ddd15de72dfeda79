"""The lite counters and histograms read exactly as prometheus-client's own `Counter` and
`Histogram` given the same updates (names, labels, bounds, cumulative counts, sums, +Inf),
less the `_created` samples."""

from __future__ import annotations

import enum

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from gengate.observability.metrics_lite import LiteCounter, LiteHistogram

BUCKETS = (0.005, 0.01, 0.25, 1, 10, 300)


class Colour(enum.StrEnum):
    RED = "red"


def lines(registry: CollectorRegistry) -> list[bytes]:
    return [line for line in generate_latest(registry).splitlines() if b"_created" not in line]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), max_size=30))
def test_a_histogram_reads_as_prometheus_clients(values: list[float]) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    plain = LiteHistogram("plain_seconds", "Plain.", buckets=BUCKETS, registry=ours)
    labelled = LiteHistogram("by_model_seconds", "By model.", ["model"], buckets=BUCKETS, registry=ours)
    their_plain = Histogram("plain_seconds", "Plain.", buckets=BUCKETS, registry=theirs)
    their_labelled = Histogram("by_model_seconds", "By model.", ["model"], buckets=BUCKETS, registry=theirs)
    for i, value in enumerate(values):
        model = ("a", "b")[i % 2]
        plain.observe(value)
        labelled.labels(model).observe(value)
        their_plain.observe(value)
        their_labelled.labels(model).observe(value)
    assert lines(ours) == lines(theirs)


def test_bounds_are_inclusive_as_prometheus_clients() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    mine = LiteHistogram("edge_seconds", "Edges.", buckets=BUCKETS, registry=ours)
    their = Histogram("edge_seconds", "Edges.", buckets=BUCKETS, registry=theirs)
    for value in (*BUCKETS, 0.0, 0.0050001, 1e9):
        mine.observe(value)
        their.observe(value)
    assert lines(ours) == lines(theirs)


def test_a_counter_reads_as_prometheus_clients() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    plain = LiteCounter("events", "Events.", registry=ours)
    labelled = LiteCounter("attempts", "Attempts.", ["outcome", "colour"], registry=ours)
    their_plain = Counter("events", "Events.", registry=theirs)
    their_labelled = Counter("attempts", "Attempts.", ["outcome", "colour"], registry=theirs)
    plain.inc()
    plain.inc(2.5)
    their_plain.inc()
    their_plain.inc(2.5)
    for outcome in ("delivered", "retry", "delivered"):
        labelled.labels(outcome, Colour.RED).inc()
        their_labelled.labels(outcome, "red").inc()
    assert lines(ours) == lines(theirs)
    assert ours.get_sample_value("attempts_total", {"outcome": "delivered", "colour": "red"}) == 2


def test_a_label_value_and_its_enum_member_are_one_series() -> None:
    registry = CollectorRegistry()
    counter = LiteCounter("events", "Events.", ["colour"], registry=registry)
    counter.labels(Colour.RED).inc()
    counter.labels("red").inc()
    assert registry.get_sample_value("events_total", {"colour": "red"}) == 2


def test_the_wrong_number_of_labels_is_refused() -> None:
    registry = CollectorRegistry()
    counter = LiteCounter("events", "Events.", ["colour"], registry=registry)
    histogram = LiteHistogram("took_seconds", "Took.", ["model"], buckets=BUCKETS, registry=registry)
    with pytest.raises(ValueError, match="takes the labels"):
        counter.labels("red", "extra")
    with pytest.raises(ValueError, match="takes the labels"):
        histogram.labels()
