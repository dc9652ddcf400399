"""The Learning page's SVG charts: every point carries its value (fast: no Airflow)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from active_learning.learning_page.charts import (
    HEIGHT,
    MARGIN_BOTTOM,
    Series,
    axis,
    bar_chart,
    data_value,
    line_chart,
    nice_top,
)

SVG = "{http://www.w3.org/2000/svg}"
DAYS = ["2026-12-01", "2026-12-02", "2026-12-03"]


def points(svg: str, tag: str) -> dict[tuple[str, str], str]:
    root = ET.fromstring(svg)  # well-formed XML too
    return {
        (element.get("data-series"), element.get("data-day")): element.get("data-value")
        for element in root.iter(f"{SVG}{tag}")
        if element.get("data-value") is not None
    }


@pytest.mark.parametrize(
    ("highest", "top"), [(0.0, 1.0), (0.37, 0.5), (0.5, 0.5), (0.51, 1.0), (7, 10.0), (8, 10.0), (21, 25.0)]
)
def test_the_axis_tops_at_a_round_number(highest: float, top: float) -> None:
    assert nice_top(highest) == pytest.approx(top)


@pytest.mark.parametrize(
    ("highest", "counts", "scale"),
    [
        (0.25, False, (0.25, 5)),  # steps of 0.05
        (0.37, False, (0.5, 5)),  # 0.1
        (0.9, False, (1.0, 5)),  # 0.2
        (1.7, False, (2.0, 4)),  # 0.5
        (1.0, True, (1.0, 1)),  # a count: 0 and 1, no 0.2 of a review
        (3, True, (3.0, 3)),
        (8, True, (10.0, 5)),  # steps of 2
        (0, True, (1.0, 1)),
    ],
)
def test_the_axis_steps_are_round(highest: float, counts: bool, scale: tuple[float, int]) -> None:
    top, intervals = axis(highest, counts)
    assert (top, intervals) == pytest.approx(scale)


def test_values_read_back_exactly() -> None:
    assert data_value(8) == "8"
    assert float(data_value(0.1 + 0.2)) == 0.1 + 0.2


def test_a_line_chart_has_a_point_per_known_value_with_its_value() -> None:
    svg = line_chart(
        "map",
        "mAP",
        DAYS,
        [
            Series("new", "new", [0.31, None, 0.4567], "red"),
            Series("serving", "serving", [0.3, 0.3, 0.4], "b"),
        ],
        fmt=lambda value: f"{value:.3f}",
    )
    assert points(svg, "circle") == {
        ("new", "2026-12-01"): "0.31",
        ("new", "2026-12-03"): "0.4567",
        ("serving", "2026-12-01"): "0.3",
        ("serving", "2026-12-02"): "0.3",
        ("serving", "2026-12-03"): "0.4",
    }
    root = ET.fromstring(svg)
    assert root.get("data-chart") == "map"
    # the unknown day breaks the new model's line: one line for serving, none of one point for new
    assert len(root.findall(f"{SVG}polyline")) == 1
    titles = [title.text for title in root.iter(f"{SVG}title")]
    assert "2026-12-03: new 0.457" in titles


def test_a_higher_value_is_drawn_higher() -> None:
    svg = line_chart("c", "c", DAYS[:2], [Series("s", "s", [1, 9], "red")])
    low, high = ET.fromstring(svg).iter(f"{SVG}circle")
    assert float(high.get("cy")) < float(low.get("cy"))


def test_a_bar_chart_has_a_bar_per_known_value_and_a_zero_is_a_hairline() -> None:
    svg = bar_chart(
        "counts",
        "c",
        DAYS,
        [Series("routed", "r", [8, 0, None], "red"), Series("labels", "l", [5, 0, 2], "g")],
    )
    assert points(svg, "rect") == {
        ("routed", "2026-12-01"): "8",
        ("routed", "2026-12-02"): "0",
        ("labels", "2026-12-01"): "5",
        ("labels", "2026-12-02"): "0",
        ("labels", "2026-12-03"): "2",
    }
    zero = next(
        bar
        for bar in ET.fromstring(svg).iter(f"{SVG}rect")
        if bar.get("data-value") == "0" and bar.get("data-series") == "routed"
    )
    assert float(zero.get("height")) == 1.0
    assert float(zero.get("y")) + 1.0 == pytest.approx(HEIGHT - MARGIN_BOTTOM)


def test_many_days_label_at_most_a_few_but_always_the_last() -> None:
    days = [f"2026-11-{n:02d}" for n in range(1, 31)]
    svg = line_chart("c", "c", days, [Series("s", "s", list(range(30)), "red")], flagged={"2026-11-30"})
    labels = [text for text in ET.fromstring(svg).iter(f"{SVG}text") if "day" in (text.get("class") or "")]
    assert len(labels) <= 8
    assert labels[-1].get("class") == "day empty"
    assert labels[-1].find(f"{SVG}title").text == "2026-11-30"


def test_text_is_escaped() -> None:
    svg = line_chart("c", "<b>&", ["<day>"], [Series('"s"', "a&b", [1], "red")])
    root = ET.fromstring(svg)
    assert root.get("aria-label") == "<b>&"
    assert next(root.iter(f"{SVG}circle")).get("data-series") == '"s"'
