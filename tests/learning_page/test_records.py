"""The Learning page's days from day records, and its late review waits (fast: no Airflow)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from active_learning.learning_page.records import (
    Day,
    LateWait,
    day_from_record,
    days_from_records,
    late_waits,
    merge_sources,
)
from tests.learning_page.records import day_record


def test_a_day_reads_the_records_numbers() -> None:
    record = day_record("2026-12-01", images=40, routed=6, completed=4, failed=1, labels=4, new_map=0.42)
    day = day_from_record(record)
    assert day == Day(
        day="2026-12-01",
        run_id="scheduled__2026-12-01T00:00:00+00:00",
        images=40,
        empty_day=False,
        routed=6,
        reviews_started=6,
        reviews_completed=4,
        reviews_failed=1,
        labels=4,
        map_new=0.42,
        map_serving=0.31,
        gate_decision="updated",
        cost_total=record["cost"]["total"],
        cost_per_label=record["cost"]["per_label"],
        review_budget=8,
        starving=True,  # routed 6 < 8 while serving 0.31 < 0.5
        written_at="2026-12-01T23:00:00+00:00",
    )
    assert day.outstanding == 1  # 6 started, 4 completed, 1 failed


def test_what_a_record_does_not_know_stays_unknown() -> None:
    record = day_record("2026-12-02", new_map=None)
    record["reviews"] = {"started": None, "completed": None}
    record["images"] = "many"  # not a count
    record["routed"] = True  # nor is a bool
    day = day_from_record(record)
    assert day is not None
    assert (day.map_new, day.images, day.routed, day.reviews_started) == (None, None, None, None)
    assert day.outstanding is None
    assert day.gate_decision == "no training"


def test_an_empty_day_is_flagged() -> None:
    day = day_from_record(day_record("2026-12-03", images=0, routed=0, completed=0, labels=0, new_map=None))
    assert day is not None
    assert day.empty_day
    assert day.cost_per_label is None  # no label: no cost per label, not zero


def test_something_that_is_not_a_record_is_no_day() -> None:
    assert day_from_record({}) is None
    assert day_from_record({"day": 20261201}) is None


def test_the_record_without_a_run_id_takes_the_runs() -> None:
    record = day_record("2026-12-01")
    del record["run_id"]
    day = day_from_record(record, "manual__1")
    assert day is not None
    assert day.run_id == "manual__1"


def test_days_are_sorted_and_a_days_last_written_record_wins() -> None:
    first = day_record("2026-12-02", run_id="scheduled__2", written_at="2026-12-02T23:00:00+00:00", labels=3)
    rerun = day_record("2026-12-02", run_id="manual__2", written_at="2026-12-04T08:00:00+00:00", labels=5)
    other = day_record("2026-12-01")
    days = days_from_records([(None, rerun), (None, other), (None, first), (None, {"no": "day"})])
    assert [(day.day, day.run_id, day.labels) for day in days] == [
        ("2026-12-01", "scheduled__2026-12-01T00:00:00+00:00", 8),
        ("2026-12-02", "manual__2", 5),
    ]


def test_asset_events_stand_in_only_for_runs_without_an_xcom() -> None:
    kept = day_record("2026-12-01", run_id="run-1", labels=8)
    old_event = day_record("2026-12-01", run_id="run-1", labels=1)
    cleared = day_record("2026-12-02", run_id="run-2")
    del cleared["run_id"]  # the event's source run says which run it was
    merged = merge_sources([("run-1", kept)], [("run-1", old_event), ("run-2", cleared), ("run-2", kept)])
    assert merged == [("run-1", kept), ("run-2", cleared)]


def test_a_wait_is_late_after_the_limit_in_a_waiting_state_only() -> None:
    now = datetime(2026, 12, 6, 12, tzinfo=UTC)
    waits = [
        ("old", "deferred", now - timedelta(hours=30)),
        ("older", "running", now - timedelta(hours=50)),
        ("recent", "deferred", now - timedelta(hours=23)),
        ("done", "success", now - timedelta(hours=90)),
        ("never started", "deferred", None),
    ]
    late = late_waits(waits, now, 24)
    assert late == [
        LateWait("older", "running", now - timedelta(hours=50), 50.0),
        LateWait("old", "deferred", now - timedelta(hours=30), 30.0),
    ]
    assert [wait.run_id for wait in late_waits(waits, now, 0)] == ["older", "old", "recent"]
