"""A loop's days from its day records, and its late review waits (pure: no Airflow, no I/O).

A day record is what :func:`active_learning.day_summary.summarize_day` returns. Records come from
runs, and a day can have several (a rerun, a manual run beside the scheduled one): the page shows
one row per day, the record written last. A record says ``None`` where a task did not run; so does
a :class:`Day`, never a made-up zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

SUMMARY_TASK = "day_summary"
WAIT_TASK = "wait_for_human_loops"
# key of the day record on the manifest Asset event's extra
SUMMARY_EXTRA_KEY = "summary"
DEFAULT_LATE_AFTER_HOURS = 24.0
# a wait in one of these states has not finished: deferred (the default), or a sensor that is
# running or rescheduled; its start_date is kept across deferrals, so its age is the wait's age
WAITING_STATES = frozenset({"running", "deferred", "up_for_reschedule"})
SECONDS_PER_HOUR = 3600.0


def _number(value: Any) -> float | int | None:
    """A count or a measure as the record holds it; anything else (``None``, text, bool) is unknown."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def _int(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def _section(record: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = record.get(key)
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class Day:
    """One day of a loop, as the page shows it.

    :param day: the day processed, ``YYYY-MM-DD``.
    :param run_id: the DagRun whose record this is.
    :param images: images predicted that day.
    :param empty_day: no image arrived that day.
    :param routed: images routed to review.
    :param reviews_started: reviews started (human loops or tasks).
    :param reviews_completed: reviews completed by the end of the wait.
    :param reviews_failed: reviews failed or stopped.
    :param labels: images whose reviewed boxes became manifest lines.
    :param map_new: validation mAP of the model trained that day.
    :param map_serving: validation mAP of the model serving at the end of the day.
    :param gate_decision: what the evaluation gate and the update did.
    :param cost_total: the day's estimated cost, USD.
    :param cost_per_label: the estimated cost per label, USD.
    :param review_budget: the ``max_reviews`` setting.
    :param starving: the record's verdict (see :func:`active_learning.day_summary.is_starving`).
    :param written_at: when the record was written (ISO); the latest of a day's records wins.
    """

    day: str
    run_id: str
    images: int | None = None
    empty_day: bool = False
    routed: int | None = None
    reviews_started: int | None = None
    reviews_completed: int | None = None
    reviews_failed: int | None = None
    labels: int | None = None
    map_new: float | None = None
    map_serving: float | None = None
    gate_decision: str | None = None
    cost_total: float | None = None
    cost_per_label: float | None = None
    review_budget: int | None = None
    starving: bool = False
    written_at: str = ""

    @property
    def outstanding(self) -> int | None:
        """Reviews neither completed nor failed when the day's wait ended (timed out, left open)."""
        if self.reviews_started is None:
            return None
        done = (self.reviews_completed or 0) + (self.reviews_failed or 0)
        return max(self.reviews_started - done, 0)


def day_from_record(record: Mapping[str, Any], run_id: str | None = None) -> Day | None:
    """The :class:`Day` of a day record; ``None`` for something that is not one (no day).

    :param run_id: the run the record came from, when the record does not say.
    """
    day = record.get("day")
    if not isinstance(day, str) or not day:
        return None
    reviews = _section(record, "reviews")
    labels = _section(record, "labels")
    maps = _section(record, "validation_map")
    cost = _section(record, "cost")
    gate = _section(record, "gate")
    decision = gate.get("decision")
    return Day(
        day=day,
        run_id=str(record.get("run_id") or run_id or ""),
        images=_int(record.get("images")),
        empty_day=record.get("empty_day") is True,
        routed=_int(record.get("routed")),
        reviews_started=_int(reviews.get("started")),
        reviews_completed=_int(reviews.get("completed")),
        reviews_failed=_int(reviews.get("failed_or_stopped")),
        labels=_int(labels.get("converted")),
        map_new=_number(maps.get("new")),
        map_serving=_number(maps.get("serving")),
        gate_decision=decision if isinstance(decision, str) else None,
        cost_total=_number(cost.get("total")),
        cost_per_label=_number(cost.get("per_label")),
        review_budget=_int(record.get("review_budget")),
        starving=record.get("starving") is True,
        written_at=str(record.get("written_at") or ""),
    )


def days_from_records(records: Iterable[tuple[str | None, Mapping[str, Any]]]) -> list[Day]:
    """One :class:`Day` per day, sorted by day: of a day's records, the one written last.

    :param records: ``(run_id, record)`` pairs, the run the record came from (or ``None``).
    """
    latest: dict[str, Day] = {}
    for run_id, record in records:
        day = day_from_record(record, run_id)
        if day is None:
            continue
        known = latest.get(day.day)
        # ISO times of one writer compare as text; on a tie the later record read wins
        if known is None or day.written_at >= known.written_at:
            latest[day.day] = day
    return [latest[key] for key in sorted(latest)]


def merge_sources(
    xcom_records: Iterable[tuple[str, Mapping[str, Any]]],
    event_records: Iterable[tuple[str | None, Mapping[str, Any]]],
) -> list[tuple[str | None, Mapping[str, Any]]]:
    """The XCom records, then each Asset event record of a run without one (a cleared run's XCom is
    gone until its ``day_summary`` runs again; the event it put on the manifest Asset stays)."""
    merged: list[tuple[str | None, Mapping[str, Any]]] = list(xcom_records)
    runs = {run_id for run_id, _ in merged}
    for run_id, record in event_records:
        key = record.get("run_id") or run_id
        if key not in runs:
            merged.append((run_id, record))
            runs.add(key)
    return merged


@dataclass(frozen=True)
class LateWait:
    """A run whose wait for its reviews has lasted longer than the page's limit.

    :param run_id: the DagRun.
    :param state: the wait task's state (``deferred``, ``running``, ``up_for_reschedule``).
    :param started: when the wait started (its task's start date).
    :param hours: how long it has waited, in hours.
    """

    run_id: str
    state: str
    started: datetime
    hours: float


def late_waits(
    waits: Iterable[tuple[str, str | None, datetime | None]], now: datetime, late_after_hours: float
) -> list[LateWait]:
    """The waits still waiting after ``late_after_hours``, longest first.

    :param waits: ``(run_id, state, start_date)`` of each run's ``wait_for_human_loops`` task.
    :param now: the time to measure against (aware, as the start dates are).
    """
    late = []
    for run_id, state, started in waits:
        if state not in WAITING_STATES or started is None:
            continue
        hours = (now - started).total_seconds() / SECONDS_PER_HOUR
        if hours > late_after_hours:
            late.append(LateWait(run_id, state, started, hours))
    return sorted(late, key=lambda wait: -wait.hours)
