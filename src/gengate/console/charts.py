"""Bar charts as inline SVG, drawn on the server: no chart library, nothing to load.

A chart is computed here as rectangles and labels in a fixed coordinate box; the template only
writes them out as `<rect>` and `<text>` (colours are presentation attributes, which a strict
Content-Security-Policy allows, unlike `style`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gengate.store.console_base import DailyUsage

#: Distinct on white and on each other, dark enough for white text beside them (WCAG AA).
PALETTE = ("#1d4ed8", "#b45309", "#047857", "#7c3aed", "#be123c", "#0e7490", "#4d7c0f", "#a21caf")
WIDTH, HEIGHT = 640, 220
LEFT, BOTTOM, TOP = 48, 28, 12


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str


@dataclass(frozen=True, slots=True)
class Label:
    x: float
    y: float
    text: str


@dataclass(frozen=True, slots=True)
class Chart:
    id: str
    title: str
    bars: list[Bar]
    x_labels: list[Label]
    y_labels: list[Label]
    legend: list[tuple[str, str]]
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def empty(self) -> bool:
        return not self.bars


def colours(models: Sequence[str]) -> dict[str, str]:
    return {model: PALETTE[i % len(PALETTE)] for i, model in enumerate(sorted(set(models)))}


def nice_top(value: int) -> int:
    """The smallest of 1, 2 or 5 times a power of ten at or above `value` (at least 1)."""
    power = 1
    while True:
        for multiple in (1, 2, 5):
            if multiple * power >= value:
                return multiple * power
        power *= 10


def daily_chart(
    chart_id: str,
    title: str,
    rows: Sequence[DailyUsage],
    days: Sequence[int],
    measure: Callable[[DailyUsage], int],
) -> Chart:
    """Bars per day (`days`: days since 1970), stacked by model, of `measure` of each row."""
    palette = colours([r.model for r in rows])
    by_day: dict[int, list[DailyUsage]] = {}
    for row in rows:
        by_day.setdefault(row.day, []).append(row)
    totals = [sum(measure(r) for r in by_day.get(day, ())) for day in days]
    top = nice_top(max(totals, default=0))
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    slot = plot_w / max(1, len(days))
    bars: list[Bar] = []
    x_labels: list[Label] = []
    for i, day in enumerate(days):
        x = LEFT + i * slot + slot * 0.15
        base: float = TOP + plot_h
        date = dt.date(1970, 1, 1) + dt.timedelta(days=day)
        for row in sorted(by_day.get(day, ()), key=lambda r: r.model):
            value = measure(row)
            if value <= 0:
                continue
            h = plot_h * value / top
            base -= h
            bars.append(
                Bar(x, base, slot * 0.7, h, palette[row.model], f"{date:%b %d} {row.model}: {value:,}")
            )
        if len(days) <= 16 or i % 2 == 0:
            x_labels.append(Label(x + slot * 0.35, HEIGHT - 10, f"{date:%m-%d}"))
    marks = (0, top // 2, top) if top >= 2 else (0, top)
    y_labels = [Label(LEFT - 6, TOP + plot_h * (1 - m / top) + 4, f"{m:,}") for m in marks]
    return Chart(chart_id, title, bars, x_labels, y_labels, sorted(palette.items()))
