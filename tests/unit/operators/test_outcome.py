"""FailedDayOperator: fails naming the failed tasks of its own run."""

from __future__ import annotations

from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from active_learning.operators.outcome import FailedDayOperator


class FakeTaskInstance:
    """The part of the Task SDK's RuntimeTaskInstance the operator uses."""

    dag_id = "active_learning"
    run_id = "scheduled__2026-11-26T00:00:00+00:00"

    def __init__(self, states: dict[str, str | None]) -> None:
        self.states = states
        self.requests: list[dict[str, Any]] = []

    def get_task_states(self, **kwargs: Any) -> dict[str, dict[str, str | None]]:
        self.requests.append(kwargs)
        return {self.run_id: self.states}


def test_defaults_fire_on_one_failure_without_retries() -> None:
    op = FailedDayOperator(task_id="failed_day")
    assert (op.trigger_rule, op.retries) == ("one_failed", 0)


def test_fails_naming_the_failed_and_upstream_failed_tasks_of_its_run() -> None:
    ti = FakeTaskInstance(
        {
            "batch_predict": "failed",
            "start_human_loops": "upstream_failed",
            "deploy_model": "success",
            "incremental_training": "skipped",
            "failed_day": None,
        }
    )

    with pytest.raises(AirflowFailException) as raised:
        FailedDayOperator(task_id="failed_day").execute({"ti": ti})

    assert str(raised.value) == "The day failed: batch_predict failed, start_human_loops upstream_failed"
    assert ti.requests == [{"dag_id": "active_learning", "run_ids": [ti.run_id]}]
