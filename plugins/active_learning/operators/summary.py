"""The day's record: ``runs/<day>/summary.json``, the manifest Asset event, metrics, the empty-days alert."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import AirflowSkipException
from airflow.sdk import TriggerRule
from botocore.exceptions import ClientError

from active_learning.alerts import AlertRoute, empty_days_message
from active_learning.assets import record_asset_events
from active_learning.day_summary import (
    Prices,
    carried_training,
    changed_parts,
    headline,
    same_outcome,
    summarize_day,
)
from active_learning.hooks.errors import error_code
from active_learning.hooks.models import ModelLineageHook
from active_learning.operators.base import LoopOperatorMixin
from active_learning.settings import LoopSettings
from active_learning.training_data import TAG_VALIDATION_MAP

SUMMARY = "summary.json"


def _seconds_between(start: Any, end: Any) -> float:
    return max((end - start).total_seconds(), 0.0) if start and end else 0.0


class DaySummaryOperator(LoopOperatorMixin, AwsBaseOperator[ModelLineageHook]):
    """Write the day's record, ``runs/<day>/summary.json``, when every other task of the day is done.

    The record (:func:`active_learning.day_summary.summarize_day`) holds the day's counts, the new
    and serving model's validation mAP, the gate's decision, the estimated cost (the training and
    transform jobs' run times read from SageMaker) and whether the loop is starving. It is the
    task's return value and the ``summary`` of the manifest Asset event's ``extra``. A rerun whose
    record says the same as the one written skips: no second Asset event wakes the consumers.
    With an alert route, the ``empty_days_alert``-th empty day in a row sends one message.

    :param settings: the loop settings (see :class:`active_learning.settings.LoopSettings`).
    :param day: the day to process, ``YYYY-MM-DD``.
    :param loop: the loop's name in the record (its DAG id).
    :param summarized_tasks: the task ids whose results make the record.
    :param prices: what reviews and instance-hours cost, for the estimate.
    :param target_validation_map: below it, a day routing under its budget is starving.
    :param alert_route: where the empty-days alert goes (``None``: nowhere).
    :param empty_days_alert: alert after this many empty days in a row (0: never).
    """

    aws_hook_class = ModelLineageHook
    template_fields: Sequence[str] = aws_template_fields("settings", "day")
    template_fields_renderers = {"settings": "json"}

    def __init__(
        self,
        *,
        settings: Mapping[str, Any] | str,
        day: str,
        loop: str,
        summarized_tasks: Sequence[str],
        prices: Prices,
        target_validation_map: float,
        alert_route: AlertRoute | None = None,
        empty_days_alert: int = 0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("trigger_rule", TriggerRule.ALL_DONE)
        super().__init__(**kwargs)
        self.settings = settings
        self.day = day
        self.loop = loop
        self.summarized_tasks = list(summarized_tasks)
        self.prices = prices
        self.target_validation_map = target_validation_map
        self.alert_route = alert_route
        self.empty_days_alert = empty_days_alert

    def execute(self, context: Any) -> dict[str, Any]:
        settings, day = self.loop_settings, self.run_day
        ti = context["ti"]
        results = {task: ti.xcom_pull(task_ids=task) for task in self.summarized_tasks}
        states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
        states = {task: str(state) for task, state in states.items() if task in self.summarized_tasks}
        key = settings.run_key(day, SUMMARY)
        uri = f"s3://{settings.bucket}/{key}"
        previous = self._read(settings, key)
        if results.get("incremental_training") is None:
            results["incremental_training"] = carried_training(previous)
        summary = summarize_day(
            day=day.isoformat(),
            loop=self.loop,
            run_id=ti.run_id,
            results=results,
            states=states,
            serving=self._serving(settings),
            training_seconds=self._training_seconds(results.get("incremental_training")),
            transform_instance_seconds=self._transform_seconds(results.get("batch_predict")),
            prices=self.prices,
            review_budget=settings.max_reviews,
            target_map=self.target_validation_map,
            written_at=datetime.now(UTC).isoformat(),
        )
        if same_outcome(previous, summary):
            raise AirflowSkipException(
                f"{uri} already says this (written {previous['written_at']} by "
                f"{previous['run_id']}): no new record, no second Asset event"
            )
        if previous is not None:
            self.log.info(
                "Rewriting the record of %s (run %s): %s changed",
                uri,
                previous.get("run_id"),
                ", ".join(changed_parts(previous, summary)),
            )
        self.s3.load_string(json.dumps(summary, indent=2), key, settings.bucket, replace=True)
        self.log.info("The day: %s (%s)", headline(summary), uri)
        self._emit_metrics(summary)
        if summary["empty_day"]:
            self._alert_when_empty_days(settings, day, context)
        manifest = results.get("augmented_manifest") or {}
        record_asset_events(
            context,
            self.outlets,
            {
                "day": summary["day"],
                "uri": manifest.get(
                    "manifest_uri", f"s3://{settings.bucket}/{settings.run_key(day, 'augmented.manifest')}"
                ),
                "lines": manifest.get("converted", 0),
                "summary_uri": uri,
                "summary": summary,
            },
        )
        return summary

    def _read(self, settings: LoopSettings, key: str) -> dict[str, Any] | None:
        """The record at ``key``, in one GET; ``None`` when there is none (or it is damaged: rewritten)."""
        try:
            body = self.s3.get_conn().get_object(Bucket=settings.bucket, Key=key)["Body"].read()
        except ClientError as err:
            if error_code(err) in ("NoSuchKey", "404"):
                return None
            raise
        try:
            return json.loads(body)
        except json.JSONDecodeError:
            return None

    def _serving(self, settings: LoopSettings) -> dict[str, Any] | None:
        serving = self.hook.serving_model(settings.endpoint_name)
        if serving is None:
            return None
        recorded = serving.tags.get(TAG_VALIDATION_MAP)
        return {
            "model_name": serving.model_name,
            "model_data_url": serving.model_data_url,
            "endpoint_config_name": serving.endpoint_config_name,
            "validation_map": float(recorded) if recorded else None,
        }

    def _training_seconds(self, training: Mapping[str, Any] | None) -> float:
        if not training:
            return 0.0
        job = self.hook.describe_training_job(training["training_job_name"])
        billable = job.get("BillableTimeInSeconds")
        if billable is not None:
            return float(billable)
        return _seconds_between(job.get("TrainingStartTime"), job.get("TrainingEndTime"))

    def _transform_seconds(self, predicted: Mapping[str, Any] | None) -> float:
        name = (predicted or {}).get("transform_job_name")
        if not name:
            return 0.0
        job = self.hook.describe_transform_job(name)
        instances = int(job.get("TransformResources", {}).get("InstanceCount", 1))
        return instances * _seconds_between(job.get("TransformStartTime"), job.get("TransformEndTime"))

    def _emit_metrics(self, summary: Mapping[str, Any]) -> None:
        """Gauges per loop, where a StatsD or OpenTelemetry backend is configured (silent otherwise)."""
        from airflow.sdk.observability.stats import Stats

        tags = {"loop": self.loop}
        gauges = {
            "routed": summary["routed"],
            "reviews_completed": summary["reviews"]["completed"],
            "labels": summary["labels"]["converted"],
            "serving_map": summary["validation_map"]["serving"],
            "cost_usd": summary["cost"]["total"],
        }
        for name, value in gauges.items():
            if value is not None:
                Stats.gauge(f"active_learning.{name}", value, tags=tags)

    def _alert_when_empty_days(self, settings: LoopSettings, day: date, context: Any) -> None:
        """One message on the ``empty_days_alert``-th empty day in a row (not again on the next ones)."""
        if self.alert_route is None or self.empty_days_alert == 0:
            return
        days = [day - timedelta(days=back) for back in range(self.empty_days_alert + 1)]
        records = [self._read(settings, settings.run_key(each, SUMMARY)) for each in days[1:]]
        empty_before = 0
        for record in records:
            if not (record and record.get("empty_day")):
                break
            empty_before += 1
        if empty_before + 1 != self.empty_days_alert:
            return
        subject, message = empty_days_message(
            self.loop, sorted(each.isoformat() for each in days[: self.empty_days_alert])
        )
        self.log.warning("%s", message)
        self.alert_route.notifier(message, subject)(context)
