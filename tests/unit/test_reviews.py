from __future__ import annotations

from active_learning.reviews import ReviewProgress


def summaries(*statuses: str, prefix: str = "al-20261126-") -> list[dict]:
    return [
        {"HumanLoopName": f"{prefix}{i}", "HumanLoopStatus": status, "FailureReason": "worker abandoned"}
        if status == "Failed"
        else {"HumanLoopName": f"{prefix}{i}", "HumanLoopStatus": status}
        for i, status in enumerate(statuses)
    ]


def test_only_the_runs_loops_count() -> None:
    other_day = summaries("InProgress", prefix="al-20261125-")
    progress = ReviewProgress.from_summaries(summaries("Completed", "Failed") + other_day, "al-20261126-", 2)
    assert progress.counts == {"Completed": 1, "Failed": 1}
    assert progress.failures == {"al-20261126-1": "worker abandoned"}
    assert progress.is_done()
    assert progress.describe() == "2/2 loops terminal (Completed 1, Failed 1)"


def test_in_progress_loops_are_waited_for_unless_enough_completed() -> None:
    progress = ReviewProgress.from_summaries(
        summaries("Completed", "Completed", "Completed", "InProgress"), "al-", 4
    )
    assert not progress.is_done(1.0)
    assert progress.is_done(0.75)
    assert not progress.is_done(0.8)


def test_loops_not_listed_yet_are_not_done() -> None:
    assert not ReviewProgress.from_summaries(summaries("Completed"), "al-", 2).is_done()


def test_stopped_without_reason_reports_the_status() -> None:
    progress = ReviewProgress.from_summaries(summaries("Stopped"), "al-", 1)
    assert progress.failures == {"al-20261126-0": "Stopped"}


def test_no_loops_is_done() -> None:
    assert ReviewProgress.from_summaries([], "al-", 0).is_done()
