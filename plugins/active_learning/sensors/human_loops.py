"""Wait, without holding a worker slot when deferrable, until the run's human loops are done."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, Literal

from airflow.providers.amazon.aws.sensors.base_aws import AwsBaseSensor
from airflow.providers.amazon.aws.utils import validate_execute_complete_event
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import AirflowException, conf
from airflow.sdk import PokeReturnValue
from airflow.sdk.exceptions import AirflowSensorTimeout

from active_learning.hooks.a2i import A2IRuntimeHook
from active_learning.hooks.label_studio import LabelStudioHook
from active_learning.hooks.s3_lines import iter_json_lines
from active_learning.operators.base import RetryLoggingMixin, as_mapping
from active_learning.operators.waiting import trigger_connection
from active_learning.review_backends.label_studio import (
    LabelStudioConnectionMixin,
    day_progress,
    stop_open_tasks,
)
from active_learning.reviews import ReviewProgress, loop_names
from active_learning.settings import split_s3_uri
from active_learning.triggers.human_loops import HumanLoopTrigger
from active_learning.triggers.label_studio import LabelStudioReviewTrigger
from active_learning.triggers.review_wait import ReviewWaitTrigger

LABEL_STUDIO_KEYS = {"loops", "human_loops_uri", "label_studio_project_id", "day", "required_answers"}


class HumanLoopSensor(LabelStudioConnectionMixin, RetryLoggingMixin, AwsBaseSensor[A2IRuntimeHook]):
    """Wait until a run's human loops are terminal (Completed, Failed, Stopped), or enough completed.

    One check pages ``ListHumanLoops`` over the run's window (FlowDefinitionArn, CreationTimeAfter,
    CreationTimeBefore, 100 per page): 10 calls for 1,000 loops, not one describe per loop, whatever
    other runs do. Only the run's own loops count: the names in its ``human-loops.jsonl``, read once.
    Failed and stopped loops are reported with their reasons in the log and the returned progress.
    At a timeout the loops still open are stopped first (with either ``on_timeout``), so that
    nobody works on them for nothing; the answers already given are harvested downstream.

    When the start task reviewed on Label Studio (its result has ``review_backend: label_studio``),
    one check pages the project's tasks of the run day instead (``ceil(N / 100)`` calls plus one
    token exchange), a task is complete with ``task_count`` submitted annotations, and at a timeout
    the open tasks are taken out of the labeling stream and marked stopped.

    :param human_loops: what ``StartHumanLoopsOperator`` returned (flow definition ARN, the
        ``human-loops.jsonl`` URI, creation-time window, number of loops).
    :param min_completed_fraction: share of the run's loops whose completion is enough to go on;
        1.0 waits until every loop is terminal.
    :param on_timeout: ``"continue"`` goes on with what is complete; ``"fail"`` fails the task.
    :param stop_open_loops: on a timeout, stop the loops still open, so that reviewers do not work
        on tasks whose answers nobody will read.
    :param deferrable: wait in the triggerer rather than in a worker slot.
    """

    aws_hook_class = A2IRuntimeHook
    template_fields: Sequence[str] = aws_template_fields("human_loops")

    def __init__(
        self,
        *,
        human_loops: Mapping[str, Any] | str,
        min_completed_fraction: float = 1.0,
        on_timeout: Literal["continue", "fail"] = "continue",
        stop_open_loops: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 0.0 < min_completed_fraction <= 1.0:
            raise ValueError(f"min_completed_fraction must be within (0, 1], got {min_completed_fraction}")
        if on_timeout not in ("continue", "fail"):
            raise ValueError(f"on_timeout must be 'continue' or 'fail', got {on_timeout!r}")
        self.human_loops = human_loops
        self.min_completed_fraction = min_completed_fraction
        self.on_timeout = on_timeout
        self.stop_open_loops = stop_open_loops
        self.deferrable = deferrable

    @property
    def loops(self) -> Mapping[str, Any]:
        """The start task's result; a JSON string (from a Jinja template) is decoded."""
        loops = as_mapping(self.human_loops, "human_loops")
        required = (
            LABEL_STUDIO_KEYS
            if loops.get("review_backend") == "label_studio"
            else {"loops", "human_loops_uri", "created_after", "flow_definition_arn"}
        )
        missing = required - set(loops)
        if missing:
            raise AirflowException(f"human_loops lacks {sorted(missing)}: pass the start task's output")
        return loops

    def summaries(self) -> Iterator[dict[str, Any]]:
        loops = self.loops
        return self.hook.list_human_loops(
            loops["flow_definition_arn"],
            datetime.fromisoformat(loops["created_after"]),
            datetime.fromisoformat(loops["created_before"]) if loops.get("created_before") else None,
        )

    @cached_property
    def own_loop_names(self) -> frozenset[str]:
        """The run's loops, read once from its ``human-loops.jsonl``."""
        bucket, key = split_s3_uri(self.loops["human_loops_uri"])
        return loop_names(iter_json_lines(self.s3, bucket, key))

    @property
    def on_label_studio(self) -> bool:
        return self.loops.get("review_backend") == "label_studio"

    def label_studio_args(self) -> tuple[LabelStudioHook, int, str, frozenset[str], int]:
        loops = self.loops
        return (
            LabelStudioHook(self.label_studio_conn_id),  # a fresh access token for each check
            int(loops["label_studio_project_id"]),
            str(loops["day"]),
            self.own_loop_names,
            int(loops["required_answers"]),
        )

    def check(self) -> ReviewProgress:
        if self.on_label_studio:
            progress = day_progress(*self.label_studio_args())
            self.log.info("Label Studio tasks: %s", progress.describe())
            return progress
        progress = ReviewProgress.from_summaries(self.summaries(), self.own_loop_names)
        self.log.info("Human loops: %s", progress.describe())
        return progress

    def poke(self, context: Any) -> PokeReturnValue:
        progress = self.check()
        return PokeReturnValue(progress.is_done(self.min_completed_fraction), self._report(progress, False))

    def review_trigger(self, loops: Mapping[str, Any]) -> ReviewWaitTrigger:
        """The trigger that waits for the run's loops (or Label Studio tasks) in the triggerer."""
        common = {
            "human_loops_uri": loops["human_loops_uri"],
            "min_completed_fraction": self.min_completed_fraction,
            "deadline": (datetime.now(UTC) + timedelta(seconds=self.timeout)).isoformat(),
            "poll_interval": self.poke_interval,
            "carried_requests": self.retry_log.to_dict(),
            **trigger_connection(self),
        }
        if self.on_label_studio:
            return LabelStudioReviewTrigger(
                label_studio_conn_id=self.label_studio_conn_id,
                project_id=int(loops["label_studio_project_id"]),
                day=str(loops["day"]),
                required_answers=int(loops["required_answers"]),
                **common,
            )
        return HumanLoopTrigger(
            flow_definition_arn=loops["flow_definition_arn"],
            created_after=loops["created_after"],
            created_before=loops.get("created_before"),
            **common,
        )

    def execute(self, context: Any) -> Any:
        loops = self.loops
        if int(loops["loops"]) == 0:
            self.log.info("No human loop was started for this run: nothing to wait for")
            return self._report(ReviewProgress(0), False)
        if self.deferrable:
            # one check first: reviews already done need no deferral (nor its race, apache/airflow#72716)
            progress = self.check()
            if progress.is_done(self.min_completed_fraction):
                return self._report(progress, False)
            self.defer(trigger=self.review_trigger(loops), method_name="execute_complete")
        try:
            return super().execute(context)
        except AirflowSensorTimeout:
            return self._timed_out(self.check())

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        validated = validate_execute_complete_event(event)
        if validated["status"] not in ("success", "timeout"):
            raise AirflowException(f"Waiting for human loops failed: {validated.get('message')}")
        progress = ReviewProgress(**validated["progress"])
        if validated["status"] == "timeout":
            return self._timed_out(progress)
        return self._report(progress, False)

    def _timed_out(self, progress: ReviewProgress) -> dict[str, Any]:
        """Stop the open loops, then fail or go on with what is complete, as ``on_timeout`` says."""
        stopped = self._stop_open_loops()
        if self.on_timeout == "fail":
            raise AirflowSensorTimeout(
                f"Human loops not done in time: {progress.describe()}; stopped {stopped} open loops"
            )
        return self._report(progress, True, stopped)

    def _stop_open_loops(self) -> int:
        """Stop the run's loops still InProgress (one more paged listing, one call per open loop)."""
        if not self.stop_open_loops:
            return 0
        if self.on_label_studio:
            stopped = stop_open_tasks(*self.label_studio_args())
            self.log.warning("Stopped %d Label Studio tasks still open at the timeout", stopped)
            return stopped
        open_loops = [
            summary["HumanLoopName"]
            for summary in self.summaries()
            if summary["HumanLoopName"] in self.own_loop_names and summary["HumanLoopStatus"] == "InProgress"
        ]
        stopped = sum(self.hook.stop_human_loop(name) for name in open_loops)
        self.log.warning("Stopped %d human loops still open at the timeout", stopped)
        return stopped

    def _report(self, progress: ReviewProgress, timed_out: bool, stopped: int = 0) -> dict[str, Any]:
        for name, reason in progress.failures.items():
            self.log.warning("Human loop %s did not complete: %s", name, reason)
        if timed_out:
            self.log.warning("Timed out; going on with what is complete: %s", progress.describe())
        failures = progress.to_dict()["failures"]  # the first 100 by name; counts are complete
        return {
            "expected": progress.expected,
            "completed": progress.completed,
            "counts": progress.counts,
            "failed_or_stopped": progress.counts.get("Failed", 0) + progress.counts.get("Stopped", 0),
            "failures": failures,
            "timed_out": timed_out,
            "stopped_open_loops": stopped,
        }
