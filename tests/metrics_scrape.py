"""Reading `/metrics` in tests: the samples parsed by prometheus-client's own parser, and the
metric names a PromQL expression uses."""

from __future__ import annotations

import re
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

#: A gengate metric named in a PromQL expression (a dashboard panel, an alert rule).
METRIC_NAME = re.compile(r"\bgengate_[a-z_]+\b")
#: What a histogram's or counter's samples add to the family's name.
SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created")


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def parse(text: str) -> list[Sample]:
    return [
        Sample(sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of the samples named `name` whose labels include `labels`."""
    return sum(
        s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def exposed_names(samples: list[Sample]) -> set[str]:
    """Every name a PromQL query can use: the samples' names (`x_total`, `x_bucket`, ...)."""
    return {s.name for s in samples}


def names_in_promql(expression: str) -> set[str]:
    return set(METRIC_NAME.findall(expression))
