"""The Learning page's HTML from day records: charts, table, warnings (fast: no Airflow, no server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from active_learning.learning_page.page import render_page
from active_learning.learning_page.records import Day, LateWait, days_from_records
from tests.learning_page.dom import Element, parse
from tests.learning_page.records import day_record

DAG = "active_learning"
NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)


def loop_days(*, starving_last: bool = False) -> list[Day]:
    records = [
        day_record("2026-12-03", routed=8, completed=8, labels=8, new_map=0.31, serving_map=0.31),
        day_record("2026-12-01", images=0, routed=0, completed=0, labels=0, new_map=None, serving_map=0.2),
        day_record("2026-12-02", routed=8, completed=6, failed=1, labels=6, new_map=0.25, serving_map=0.25),
    ]
    if starving_last:
        records.append(
            day_record("2026-12-04", routed=3, completed=3, labels=3, new_map=None, serving_map=0.31)
        )
    return days_from_records((None, record) for record in records)


def page(days: list[Day], late: list[LateWait] | None = None, hours: float = 24) -> Element:
    return parse(render_page(DAG, days, late or [], hours, NOW, "../../"))


def chart_values(root: Element, chart: str, series: str) -> dict[str, float]:
    svg = root.find("svg", data_chart=chart)
    return {
        element.attrs["data-day"]: float(element.attrs["data-value"])
        for element in svg.find_all(data_series=series)
        if "data-value" in element.attrs
    }


def test_the_charts_show_each_days_numbers() -> None:
    days = loop_days()
    root = page(days)
    assert chart_values(root, "map", "new") == {"2026-12-02": 0.25, "2026-12-03": 0.31}  # 12-01 did not train
    assert chart_values(root, "map", "serving") == {"2026-12-01": 0.2, "2026-12-02": 0.25, "2026-12-03": 0.31}
    assert chart_values(root, "counts", "routed") == {"2026-12-01": 0, "2026-12-02": 8, "2026-12-03": 8}
    assert chart_values(root, "counts", "labels") == {"2026-12-01": 0, "2026-12-02": 6, "2026-12-03": 8}
    assert chart_values(root, "outstanding", "outstanding") == {
        "2026-12-01": 0,
        "2026-12-02": 1,
        "2026-12-03": 0,
    }
    assert chart_values(root, "cost_per_label", "cost_per_label") == {
        day.day: day.cost_per_label for day in days if day.cost_per_label is not None
    }


def test_the_table_has_a_row_per_day_in_order_linking_its_run() -> None:
    days = loop_days()
    rows = page(days).find("table", id="days").find_all("tr", data_day=True)
    assert [row.attrs["data-day"] for row in rows] == ["2026-12-01", "2026-12-02", "2026-12-03"]
    for row, day in zip(rows, days, strict=True):
        link = row.find("a")
        assert link.attrs["href"] == f"../../dags/{DAG}/runs/scheduled__{day.day}T00:00:00+00:00"
        assert link.text == day.run_id
        cells = {cell.attrs["data-field"]: cell for cell in row.find_all("td")}
        assert set(cells) == {
            "day", "run", "images", "routed", "reviewed", "labels", "map_new", "map_serving", "gate", "cost",
            "cost_per_label",
        }  # fmt: skip
        assert cells["reviewed"].text == str(day.reviews_completed)
        assert cells["gate"].text == day.gate_decision
        assert float(cells["cost"].attrs["data-value"]) == day.cost_total
    assert rows[1].find(data_field="map_new").text == "0.250"


def test_an_empty_day_is_flagged_and_unknowns_are_not_zeros() -> None:
    root = page(loop_days())
    row = root.find("tr", data_day="2026-12-01")
    assert row.attrs["class"] == "empty"
    assert "empty day" in row.find(data_field="day").text
    map_new = row.find(data_field="map_new")
    assert map_new.text == "—"
    assert "data-value" not in map_new.attrs
    assert "1 empty" in root.text
    # the charts mark the day too
    assert {text.attrs["class"] for text in root.find_all("text") if text.text.endswith("12-01")} == {
        "day empty"
    }


def test_starving_is_warned_when_the_latest_day_says_so_only() -> None:
    days = loop_days()
    # no day's record says starving (the empty first day routed 0 of 8, but had nothing to route)
    assert [day.day for day in days if day.starving] == []
    assert page(days).find_all(id="starving") == []
    days = loop_days(starving_last=True)
    assert days[-1].starving
    warning = page(days).find(id="starving")
    assert warning.attrs["role"] == "alert"
    assert "routed 3 images to review, fewer than its budget of 8" in warning.text
    assert "(0.310)" in warning.text
    earlier = [*days[:-1], days[-1].__class__(**{**vars(days[-1]), "starving": False})]
    assert page(earlier).find_all(id="starving") == []


def test_late_reviews_are_counted_and_linked() -> None:
    started = NOW - timedelta(hours=30)
    late = [LateWait("manual__x", "deferred", started, 30.0), LateWait("manual__y", "running", started, 26.5)]
    box = page(loop_days(), late, hours=24).find(id="late-reviews")
    assert (box.attrs["data-count"], box.attrs["data-hours"]) == ("2", "24")
    assert "Late reviews: 2" in box.text
    assert [a.attrs["href"] for a in box.find_all("a")] == [
        f"../../dags/{DAG}/runs/manual__x",
        f"../../dags/{DAG}/runs/manual__y",
    ]
    assert "deferred for 30.0 h" in box.text
    limit = box.find("input", name="late_after_hours")
    assert limit.attrs["value"] == "24"
    none = page(loop_days(), [], hours=6).find(id="late-reviews")
    assert (none.attrs["data-count"], none.attrs["data-hours"]) == ("0", "6")


def test_a_loop_without_records_says_so() -> None:
    root = page([])
    assert "day_summary" in root.find(id="no-days").text
    assert root.find_all("svg") == []
    assert root.find(id="late-reviews").attrs["data-count"] == "0"


def test_names_are_escaped() -> None:
    record = day_record("2026-12-01", run_id='manual__<script>"x"')
    record["gate"]["decision"] = "<b>kept</b>"
    days = days_from_records([(None, record)])
    html = render_page("dag<&>", days, [], 24, NOW, "../../")
    assert '<script>"x"' not in html
    assert "<b>kept" not in html
    root = parse(html)
    assert root.find(id="dag-id").text == "dag<&>"
    assert root.find(data_field="gate").text == "<b>kept</b>"
    assert root.find("a").attrs["href"] == "../../dags/dag%3C%26%3E/runs/manual__%3Cscript%3E%22x%22"


def test_the_page_loads_nothing_from_anywhere() -> None:
    root = page(loop_days(starving_last=True), [LateWait("r", "deferred", NOW, 30.0)])
    assert [e.tag for e in root.iter() if e.tag in {"link", "img", "iframe", "object", "embed"}] == []
    assert [e.attrs for e in root.iter() if "src" in e.attrs] == []
    for element in root.find_all(href=True):
        assert element.attrs["href"].startswith("../../dags/"), element.attrs
    style = root.find("style").text
    assert "url(" not in style
    assert "@import" not in style
