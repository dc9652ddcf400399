"""The day's outcome: a leaf task that fails the DagRun when any task of the day failed."""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import AirflowFailException, BaseOperator
from airflow.sdk import TriggerRule

FAILED_STATES = ("failed", "upstream_failed")


class FailedDayOperator(BaseOperator):
    """Fail, naming what failed, as soon as any upstream task failed; skipped when none did.

    Airflow sets a DagRun's state from its leaf tasks. The answers of a failed wait are still
    harvested (``trigger_rule="all_done"``) and a later step may skip, which would leave every leaf
    green: this leaf, downstream of every task, makes such a day a failed DagRun.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", TriggerRule.ONE_FAILED)
        kwargs.setdefault("retries", 0)
        super().__init__(**kwargs)

    def execute(self, context: Any) -> None:
        ti = context["ti"]
        states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
        failed = sorted(f"{task} {state}" for task, state in states.items() if state in FAILED_STATES)
        raise AirflowFailException(f"The day failed: {', '.join(failed) or 'an upstream task failed'}")
