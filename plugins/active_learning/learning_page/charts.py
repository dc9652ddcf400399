"""Small server-side SVG charts, one point (or bar) per day, each carrying its value (pure).

Drawn here rather than by a JavaScript library: the page loads nothing from outside the
api-server, and matplotlib is not a runtime dependency. Every point and bar is an element with
``data-series``, ``data-day`` and ``data-value`` (the number exactly as the record holds it) and a
``<title>`` (the tooltip), so that a reader, a screen reader and a test can all read the numbers.
An unknown value (``None``: the task did not run) draws nothing and breaks a line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 560
HEIGHT = 220
MARGIN_LEFT = 52
MARGIN_RIGHT = 12
MARGIN_TOP = 14
MARGIN_BOTTOM = 40
PLOT_WIDTH = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
PLOT_HEIGHT = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
# at most this many day labels under the x axis, so that they never overlap
MAX_X_LABELS = 8
NICE_STEPS = (1.0, 2.0, 2.5, 5.0, 10.0)
# intervals of an axis topped by each nice step: steps of 0.2, 0.5, 0.5, 1 (times the power of ten)
INTERVALS = {1.0: 5, 2.0: 4, 2.5: 5, 5.0: 5}
# a count axis up to this top steps by one
SMALL_COUNT = 5

Number = float | int


@dataclass(frozen=True)
class Series:
    """One line, or one bar of each day's group.

    :param key: stable id (``data-series``), e.g. ``serving``.
    :param label: the legend's words.
    :param values: one per day, ``None`` where unknown.
    :param color: a CSS colour.
    :param hollow: open circles on a dashed line (a line chart's series that may lie on another:
        the other's dots stay visible inside the rings).
    """

    key: str
    label: str
    values: Sequence[Number | None]
    color: str
    hollow: bool = False


def data_value(value: Number) -> str:
    """The number as the record holds it: ``repr`` is the shortest text that reads back equal."""
    return str(int(value)) if isinstance(value, int) else repr(float(value))


def nice_top(highest: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above ``highest`` (1 for nothing)."""
    if highest <= 0 or not math.isfinite(highest):
        return 1.0
    power = 10 ** math.floor(math.log10(highest))
    return next(step * power for step in NICE_STEPS if step * power >= highest * (1 - 1e-12))


def axis(highest: float, counts: bool = False) -> tuple[float, int]:
    """The y axis's top and its number of intervals, each a round step (0.05, 0.5, 2, ...).

    :param counts: the values are counts: a small top is a whole number and every step one.
    """
    if counts and highest <= SMALL_COUNT:
        top = max(math.ceil(highest), 1)
        return float(top), top
    top = nice_top(highest)
    mantissa = round(top / 10 ** math.floor(math.log10(top)), 2)
    return top, INTERVALS[mantissa]


def _attr(text: str) -> str:
    return escape(text, quote=True)


def _y(value: float, top: float) -> float:
    return MARGIN_TOP + PLOT_HEIGHT * (1 - value / top)


def _x_center(index: int, count: int) -> float:
    return MARGIN_LEFT + PLOT_WIDTH * (index + 0.5) / count


def _frame(
    chart_id: str,
    title: str,
    days: Sequence[str],
    scale: tuple[float, int],
    fmt: Callable[[float], str],
    flagged: set[str],
) -> list[str]:
    """The chart's opening tag, grid, y ticks and day labels (flagged days marked)."""
    parts = [
        f'<svg class="chart" data-chart="{_attr(chart_id)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{_attr(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    top, intervals = scale
    for tick in range(intervals + 1):
        value = top * tick / intervals
        y = _y(value, top)
        parts.append(
            f'<line class="grid" x1="{MARGIN_LEFT}" x2="{WIDTH - MARGIN_RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        parts.append(
            f'<text class="tick" x="{MARGIN_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(fmt(value))}</text>"
        )
    every = max(1, math.ceil(len(days) / MAX_X_LABELS))
    for index, day in enumerate(days):
        if (len(days) - 1 - index) % every:  # counted back from the last day: it always has its label
            continue
        x = _x_center(index, len(days))
        css = "day empty" if day in flagged else "day"
        label = day[5:] if len(day) == 10 else day  # MM-DD: the year is in the table
        parts.append(
            f'<text class="{css}" x="{x:.1f}" y="{HEIGHT - MARGIN_BOTTOM + 16}" text-anchor="middle">'
            f"<title>{escape(day)}</title>{escape(label)}</text>"
        )
    return parts


def _legend(series: Sequence[Series]) -> str:
    items = []
    x = MARGIN_LEFT
    for one in series:
        swatch = (
            f'<circle cx="{x + 5}" cy="{HEIGHT - 9}" r="4" fill="none" stroke="{_attr(one.color)}" '
            'stroke-width="2"/>'
            if one.hollow
            else f'<rect x="{x}" y="{HEIGHT - 14}" width="10" height="10" fill="{_attr(one.color)}"/>'
        )
        items.append(f'{swatch}<text class="legend" x="{x + 14}" y="{HEIGHT - 5}">{escape(one.label)}</text>')
        x += 24 + 7 * len(one.label)
    return "".join(items)


def _scale(series: Sequence[Series], counts: bool) -> tuple[float, int]:
    known = [float(v) for one in series for v in one.values if v is not None and math.isfinite(v)]
    return axis(max(known, default=0.0), counts)


def _tooltip(day: str, one: Series, value: Number, fmt: Callable[[float], str]) -> str:
    return f"<title>{escape(day)}: {escape(one.label)} {escape(fmt(float(value)))}</title>"


def line_chart(
    chart_id: str,
    title: str,
    days: Sequence[str],
    series: Sequence[Series],
    fmt: Callable[[float], str] = lambda v: f"{v:g}",
    flagged: set[str] | None = None,
    counts: bool = False,
) -> str:
    """A line per series, a circle per known point; a gap where a value is unknown.

    :param chart_id: the chart's ``data-chart``.
    :param days: the x axis, one per value of each series.
    :param fmt: how ticks and tooltips show a value.
    :param flagged: days whose label is marked (empty days).
    :param counts: the values are counts (whole-number ticks).
    """
    scale = _scale(series, counts)
    top = scale[0]
    parts = _frame(chart_id, title, days, scale, fmt, flagged or set())
    for one in series:
        dash = ' stroke-dasharray="5 3"' if one.hollow else ""
        segment: list[str] = []
        segments = [segment]
        points = []
        for index, (day, value) in enumerate(zip(days, one.values, strict=True)):
            if value is None:
                segment = []
                segments.append(segment)
                continue
            x, y = _x_center(index, len(days)), _y(float(value), top)
            segment.append(f"{x:.1f},{y:.1f}")
            paint = (
                f'r="5.5" fill="none" stroke="{_attr(one.color)}" stroke-width="2"'
                if one.hollow
                else f'r="4" fill="{_attr(one.color)}"'
            )
            points.append(
                f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" {paint} '
                f'data-series="{_attr(one.key)}" data-day="{_attr(day)}" data-value="{data_value(value)}">'
                f"{_tooltip(day, one, value, fmt)}</circle>"
            )
        for points_of_segment in segments:
            if len(points_of_segment) > 1:
                parts.append(
                    f'<polyline class="line" fill="none" stroke="{_attr(one.color)}" stroke-width="2"{dash} '
                    f'points="{" ".join(points_of_segment)}"/>'
                )
        parts.extend(points)
    parts.append(_legend(series))
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(
    chart_id: str,
    title: str,
    days: Sequence[str],
    series: Sequence[Series],
    fmt: Callable[[float], str] = lambda v: f"{v:g}",
    flagged: set[str] | None = None,
    counts: bool = True,
) -> str:
    """A group of bars per day, one bar per series with a known value (a zero is a hairline)."""
    scale = _scale(series, counts)
    top = scale[0]
    parts = _frame(chart_id, title, days, scale, fmt, flagged or set())
    band = PLOT_WIDTH / max(len(days), 1)
    width = band * 0.8 / max(len(series), 1)
    for position, one in enumerate(series):
        for index, (day, value) in enumerate(zip(days, one.values, strict=True)):
            if value is None:
                continue
            x = MARGIN_LEFT + band * index + band * 0.1 + width * position
            y = _y(float(value), top)
            height = max(MARGIN_TOP + PLOT_HEIGHT - y, 1.0)
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{MARGIN_TOP + PLOT_HEIGHT - height:.1f}" '
                f'width="{width:.1f}" height="{height:.1f}" fill="{_attr(one.color)}" '
                f'data-series="{_attr(one.key)}" data-day="{_attr(day)}" data-value="{data_value(value)}">'
                f"{_tooltip(day, one, value, fmt)}</rect>"
            )
    parts.append(_legend(series))
    parts.append("</svg>")
    return "".join(parts)
