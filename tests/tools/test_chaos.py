"""The verdicts of ``make chaos`` (the suite itself runs in CI as ``make chaos``)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from tools.chaos import (
    KILLED_TASKS,
    Check,
    DayResult,
    Kill,
    SecondProcess,
    kill_plan,
    misses,
    ports,
    without_creation_dates,
)

DAYS = [date(2026, 11, 23), date(2026, 11, 24), date(2026, 11, 25)]


def clean_outputs() -> dict:
    return {
        "duplicate_loops": 0,
        "duplicate_jobs": 0,
        "duplicate_manifest_lines": 0,
        "lost_labels": [],
    }


ALL_RAN = {day: set(KILLED_TASKS) for day in DAYS}


def test_every_task_is_killed_once_in_dag_order_spread_over_the_days() -> None:
    plan = kill_plan(DAYS, 7, ALL_RAN)

    assert [kill.task for day in DAYS for kill in plan[day]] == list(KILLED_TASKS)
    assert [len(plan[day]) for day in DAYS] == [3, 3, 3]
    assert all(0.05 <= kill.fraction <= 0.6 for kills in plan.values() for kill in kills)
    assert kill_plan(DAYS, 7, ALL_RAN) == plan


def test_a_task_is_killed_on_a_day_the_clean_run_ran_it() -> None:
    trained = {"incremental_training", "evaluation_gate", "update_endpoint"}
    ran = {DAYS[0]: set(KILLED_TASKS), DAYS[1]: set(KILLED_TASKS), DAYS[2]: set(KILLED_TASKS) - trained}

    plan = kill_plan(DAYS, 7, ran)

    assert [kill.task for kill in plan[DAYS[1]]][-3:] == sorted(trained, key=KILLED_TASKS.index)
    assert len(plan[DAYS[2]]) == 0


def test_a_task_the_clean_run_never_ran_is_a_kill_missed() -> None:
    ran = {day: set(KILLED_TASKS) - {"update_endpoint"} for day in DAYS}

    [update] = [
        kill for kills in kill_plan(DAYS, 7, ran).values() for kill in kills if kill.task == "update_endpoint"
    ]

    assert update.note == "update_endpoint never ran in the clean run: no day to kill it on"
    assert not update.landed


def test_a_failed_day_that_ends_as_a_successful_dag_run_is_a_miss() -> None:
    tasks = {"tasks": {"batch_predict": "failed", "update_endpoint": "skipped"}}
    hidden = DayResult("failed day", "2026-11-23", "success", 0, outputs=tasks)
    visible = DayResult("failed day", "2026-11-23", "failed", 1, outputs=tasks)

    assert misses(visible) == []
    [miss] = misses(hidden)
    assert "the DagRun is success" in miss
    assert "batch_predict failed for good" in miss


def test_a_faulted_day_misses_on_duplicates_lost_labels_other_outputs_and_missed_kills() -> None:
    outputs = {**clean_outputs(), "duplicate_jobs": 1, "lost_labels": ["s3://b/a.jpg"]}
    kills = [Kill("batch_predict", 0.3, landed=True), Kill("deploy_model", 0.3, note="ended before 2")]
    day = DayResult("faulted", "2026-11-24", "success", 0, kills=kills, outputs=outputs, mismatched=["model"])

    assert misses(day) == [
        "1 duplicate jobs",
        "1 lost labels: ['s3://b/a.jpg']",
        "outputs differ from the clean run: model",
        "kill missed: ended before 2",
    ]
    assert misses(DayResult("faulted", "2026-11-24", "success", 0, outputs=clean_outputs())) == []


def test_manifest_lines_are_compared_without_their_review_timestamps() -> None:
    line = {"source-ref": "s3://b/a.jpg", "a2i-meta": {"creation-date": "2026-11-29T09:00:00", "type": "x"}}

    assert without_creation_dates(line) == {"source-ref": "s3://b/a.jpg", "a2i-meta": {"type": "x"}}


# What SecondProcess runs in its child, in place of the failed day and lineage scenarios (importable
# there: the child is spawned).
@dataclass
class Finishes:
    def run(self) -> tuple[DayResult | None, list[Check]]:
        ports.append(65000)  # a port the child listened on: the parent checks it at the end
        return None, [Check("lineage", "a goal", "measured", True)]


@dataclass
class Crashes:
    def run(self) -> tuple[DayResult | None, list[Check]]:
        raise ValueError("broken scenario")


@dataclass
class Waits:
    folder: Path

    def run(self) -> tuple[DayResult | None, list[Check]]:
        (self.folder / "started").touch()
        try:
            time.sleep(120)
        finally:  # where a scenario stops its emulator and Airflow runs
            (self.folder / "unwound").touch()
        return None, []


def test_the_second_process_sends_its_checks_and_ports_back() -> None:
    with SecondProcess(Finishes()) as second:  # type: ignore[arg-type]
        failed, checks = second.result()
    assert failed is None
    assert checks == [Check("lineage", "a goal", "measured", True)]
    assert 65000 in ports
    ports.remove(65000)


def test_a_second_process_that_crashed_fails_the_suite_naming_its_exit() -> None:
    with SecondProcess(Crashes()) as second, pytest.raises(RuntimeError, match="exit code 1"):  # type: ignore[arg-type]
        second.result()


def test_leaving_early_stops_the_second_process_which_unwinds(tmp_path: Path) -> None:
    """Ctrl-C or SIGTERM in the first process: the second one stops what it started, too."""
    second = SecondProcess(Waits(tmp_path))  # type: ignore[arg-type]
    with second:
        deadline = time.monotonic() + 60
        while not (tmp_path / "started").exists():
            assert time.monotonic() < deadline, "the second process never started"
            time.sleep(0.1)
    assert (tmp_path / "unwound").exists()
