from __future__ import annotations

from active_learning.reviews import ReviewProgress, loop_names


def summaries(*statuses: str, prefix: str = "al-20261126-") -> list[dict]:
    return [
        {"HumanLoopName": f"{prefix}{i}", "HumanLoopStatus": status, "FailureReason": "worker abandoned"}
        if status == "Failed"
        else {"HumanLoopName": f"{prefix}{i}", "HumanLoopStatus": status}
        for i, status in enumerate(statuses)
    ]


def names(count: int, prefix: str = "al-20261126-") -> set[str]:
    return {f"{prefix}{i}" for i in range(count)}


def test_only_the_runs_loops_count() -> None:
    other_day = summaries("InProgress", prefix="al-20261125-")
    progress = ReviewProgress.from_summaries(summaries("Completed", "Failed") + other_day, names(2))
    assert progress.counts == {"Completed": 1, "Failed": 1}
    assert progress.failures == {"al-20261126-1": "worker abandoned"}
    assert progress.is_done()
    assert progress.describe() == "2/2 loops terminal (Completed 1, Failed 1)"


def test_in_progress_loops_are_waited_for_unless_enough_completed() -> None:
    progress = ReviewProgress.from_summaries(
        summaries("Completed", "Completed", "Completed", "InProgress"), names(4)
    )
    assert not progress.is_done(1.0)
    assert progress.is_done(0.75)
    assert not progress.is_done(0.8)


def test_loops_not_listed_yet_are_not_done() -> None:
    assert not ReviewProgress.from_summaries(summaries("Completed"), names(2)).is_done()


def test_stopped_without_reason_reports_the_status() -> None:
    progress = ReviewProgress.from_summaries(summaries("Stopped"), names(1))
    assert progress.failures == {"al-20261126-0": "Stopped"}


def test_loops_of_the_same_day_that_are_not_the_runs_own_do_not_count() -> None:
    """32 terminal loops of the day that the run does not own cannot finish its 1 open loop."""
    day_loops = summaries(*["Completed"] * 32, "InProgress")
    own = {"al-20261126-32"}
    progress = ReviewProgress.from_summaries(day_loops, own)
    assert (progress.expected, progress.counts) == (1, {"InProgress": 1})
    assert not progress.is_done()
    assert progress.describe() == "0/1 loops terminal (InProgress 1)"


def test_loop_names_come_from_the_records() -> None:
    assert loop_names([{"name": "a", "source": "s3://b/x"}, {"name": "b"}]) == {"a", "b"}


def test_no_loops_is_done() -> None:
    assert ReviewProgress.from_summaries([], set()).is_done()


def test_to_dict_keeps_the_first_failure_reasons_by_name_and_every_count() -> None:
    failed = [
        {"HumanLoopName": f"al-{i:03d}", "HumanLoopStatus": "Failed", "FailureReason": f"reason {i}"}
        for i in reversed(range(120))
    ]
    stopped = [{"HumanLoopName": f"al-{i:03d}", "HumanLoopStatus": "Stopped"} for i in range(120, 150)]
    completed = [{"HumanLoopName": "al-999", "HumanLoopStatus": "Completed"}]
    everything = failed + stopped + completed
    progress = ReviewProgress.from_summaries(everything, {s["HumanLoopName"] for s in everything})

    result = progress.to_dict()

    assert list(result["failures"]) == [f"al-{i:03d}" for i in range(100)]
    assert result["failures"]["al-000"] == "reason 0"
    assert result["counts"] == {"Failed": 120, "Stopped": 30, "Completed": 1}
    assert result["expected"] == 151
    assert len(progress.failures) == 150  # the progress itself keeps every reason
    assert list(progress.to_dict(max_failures=3)["failures"]) == ["al-000", "al-001", "al-002"]
    assert ReviewProgress(**result).counts == progress.counts  # what the sensor rebuilds from an event
