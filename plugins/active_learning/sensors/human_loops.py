"""Wait, without holding a worker slot when deferrable, until the run's reviews are done."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, Literal

from airflow.providers.amazon.aws.sensors.base_aws import AwsBaseSensor
from airflow.providers.amazon.aws.utils import validate_execute_complete_event
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import AirflowException, conf
from airflow.sdk import PokeReturnValue
from airflow.sdk.exceptions import AirflowSensorTimeout

from active_learning.hooks.s3_lines import S3ClientHook, iter_json_lines
from active_learning.operators.base import ReviewTaskMixin, as_mapping
from active_learning.operators.waiting import trigger_connection
from active_learning.reviews import ReviewProgress, loop_names
from active_learning.settings import split_s3_uri

STARTED_KEYS = {"review_backend", "loops", "human_loops_uri"}


class HumanLoopSensor(ReviewTaskMixin, AwsBaseSensor[S3ClientHook]):
    """Wait until the run's reviews are terminal (Completed, Failed, Stopped), or enough completed.

    Only the run's own reviews count: the names in its ``human-loops.jsonl``, read once. A check is
    the review backend's (A2I: ``ListHumanLoops`` over the run's creation-time window, 10 calls for
    1,000 loops; Label Studio: the project's tasks of the day, 100 per call). Failed and stopped
    reviews are reported with their reasons in the log and the returned progress. At a timeout the
    reviews still open are stopped first (with either ``on_timeout``), so that nobody works on them
    for nothing; the answers already given are harvested downstream.

    :param settings: the loop settings (see :class:`active_learning.settings.LoopSettings`).
    :param day: the day to process, ``YYYY-MM-DD``.
    :param human_loops: what ``StartHumanLoopsOperator`` returned (the backend, the number of
        reviews, the ``human-loops.jsonl`` URI and what the backend's checks need).
    :param min_completed_fraction: share of the run's reviews whose completion is enough to go on;
        1.0 waits until every review is terminal.
    :param on_timeout: ``"continue"`` goes on with what is complete; ``"fail"`` fails the task.
    :param stop_open_at_timeout: on a timeout, stop the reviews still open, so that reviewers do not
        work on tasks whose answers nobody will read.
    :param review_conn_id: the connection of a review backend outside AWS.
    :param deferrable: wait in the triggerer rather than in a worker slot.
    """

    aws_hook_class = S3ClientHook
    template_fields: Sequence[str] = aws_template_fields("settings", "day", "human_loops")
    template_fields_renderers = {"settings": "json", "human_loops": "json"}

    def __init__(
        self,
        *,
        settings: Mapping[str, Any] | str,
        day: str,
        human_loops: Mapping[str, Any] | str,
        min_completed_fraction: float = 1.0,
        on_timeout: Literal["continue", "fail"] = "continue",
        stop_open_at_timeout: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 0.0 < min_completed_fraction <= 1.0:
            raise ValueError(f"min_completed_fraction must be within (0, 1], got {min_completed_fraction}")
        if on_timeout not in ("continue", "fail"):
            raise ValueError(f"on_timeout must be 'continue' or 'fail', got {on_timeout!r}")
        self.settings = settings
        self.day = day
        self.human_loops = human_loops
        self.min_completed_fraction = min_completed_fraction
        self.on_timeout = on_timeout
        self.stop_open_at_timeout = stop_open_at_timeout
        self.deferrable = deferrable

    @property
    def started(self) -> Mapping[str, Any]:
        """The start task's result; a JSON string (from a Jinja template) is decoded."""
        started = as_mapping(self.human_loops, "human_loops")
        missing = STARTED_KEYS - set(started)
        if missing:
            raise AirflowException(f"human_loops lacks {sorted(missing)}: pass the start task's output")
        return started

    def review_backend_name(self) -> str:
        """The backend that started the reviews."""
        return str(self.started["review_backend"])

    @cached_property
    def own_loop_names(self) -> frozenset[str]:
        """The run's reviews, read once from its ``human-loops.jsonl``."""
        bucket, key = split_s3_uri(self.started["human_loops_uri"])
        return loop_names(iter_json_lines(self.s3, bucket, key))

    def check(self) -> ReviewProgress:
        progress = self.backend.progress(self.started, self.own_loop_names)
        self.log.info("Reviews: %s", progress.describe())
        return progress

    def poke(self, context: Any) -> PokeReturnValue:
        progress = self.check()
        return PokeReturnValue(progress.is_done(self.min_completed_fraction), self._report(progress, False))

    def execute(self, context: Any) -> Any:
        started = self.started
        if int(started["loops"]) == 0:
            self.log.info("No review was started for this run: nothing to wait for")
            return self._report(ReviewProgress(0), False)
        if self.deferrable:
            # one check first: reviews already done need no deferral (nor its race, apache/airflow#72716)
            progress = self.check()
            if progress.is_done(self.min_completed_fraction):
                return self._report(progress, False)
            trigger = self.backend.trigger(
                started,
                human_loops_uri=started["human_loops_uri"],
                min_completed_fraction=self.min_completed_fraction,
                deadline=(datetime.now(UTC) + timedelta(seconds=self.timeout)).isoformat(),
                poll_interval=self.poke_interval,
                carried_requests=self.retry_log.to_dict(),
                **trigger_connection(self),
            )
            self.defer(trigger=trigger, method_name="execute_complete")
        try:
            return super().execute(context)
        except AirflowSensorTimeout:
            return self._timed_out(self.check())

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        validated = validate_execute_complete_event(event)
        if validated["status"] not in ("success", "timeout"):
            raise AirflowException(f"Waiting for the reviews failed: {validated.get('message')}")
        progress = ReviewProgress(**validated["progress"])
        if validated["status"] == "timeout":
            return self._timed_out(progress)
        return self._report(progress, False)

    def _timed_out(self, progress: ReviewProgress) -> dict[str, Any]:
        """Stop the open reviews, then fail or go on with what is complete, as ``on_timeout`` says."""
        stopped = self._stop_open_reviews()
        if self.on_timeout == "fail":
            raise AirflowSensorTimeout(
                f"Reviews not done in time: {progress.describe()}; stopped {stopped} open reviews"
            )
        return self._report(progress, True, stopped)

    def _stop_open_reviews(self) -> int:
        """Stop the run's reviews still open (one more check, one call per open review)."""
        if not self.stop_open_at_timeout:
            return 0
        stopped = self.backend.stop_open(self.started, self.own_loop_names)
        self.log.warning("Stopped %d reviews still open at the timeout", stopped)
        return stopped

    def _report(self, progress: ReviewProgress, timed_out: bool, stopped: int = 0) -> dict[str, Any]:
        for name, reason in progress.failures.items():
            self.log.warning("Review %s did not complete: %s", name, reason)
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
