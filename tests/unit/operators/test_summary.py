"""DaySummaryOperator: runs/<day>/summary.json, the Asset event, no second event for the same
record, and the empty-days alert through SNS (moto), read back through an SQS subscription."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date, timedelta
from typing import Any
from unittest.mock import MagicMock

import boto3
import pytest
from airflow.providers.common.compat.sdk import AirflowSkipException
from airflow.sdk import Asset
from moto import mock_aws

from active_learning.alerts import SNS_NOTIFIER, AlertRoute
from active_learning.day_summary import Prices
from active_learning.operators.summary import DaySummaryOperator
from tests.unit.operators.conftest import BUCKET, DAY, PREFIX, REGION, operator_kwargs, read_text

ASSET = Asset(name="manifest", uri=f"s3://{BUCKET}/{PREFIX}/runs/")
TASKS = [
    "batch_predict",
    "start_human_loops",
    "wait_for_human_loops",
    "augmented_manifest",
    "incremental_training",
]


def task_context(results: dict[str, Any], states: dict[str, str]) -> dict[str, Any]:
    ti = MagicMock(dag_id="active_learning", run_id=f"scheduled__{DAY}")
    ti.xcom_pull.side_effect = lambda task_ids: results.get(task_ids)
    ti.get_task_states.return_value = {ti.run_id: states}
    return {"ti": ti, "outlet_events": defaultdict(lambda: MagicMock(extra={}))}


def day_results(images: int) -> dict[str, Any]:
    return {
        "batch_predict": {"images": images, "quarantined": 0, "to_review": min(images, 3), "reasons": {}},
        "start_human_loops": {"review_backend": "a2i", "loops": min(images, 3)},
        "wait_for_human_loops": {"completed": min(images, 3)},
        "augmented_manifest": {"converted": min(images, 3), "manifest_uri": f"s3://{BUCKET}/m"},
    }


def summary_task(**kwargs: Any) -> DaySummaryOperator:
    return DaySummaryOperator(
        task_id="day_summary",
        loop="active_learning",
        summarized_tasks=TASKS,
        outlets=[ASSET],
        prices=Prices(review_per_object=0.08, training_per_hour=3.825, transform_per_hour=0.24),
        target_validation_map=0.8,
        **(operator_kwargs(max_reviews=5) | kwargs),
    )


@pytest.fixture
def aws() -> Any:
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        yield


def test_the_record_is_written_put_on_the_asset_event_and_returned(aws: Any) -> None:
    context = task_context(day_results(40), dict.fromkeys(TASKS[:4], "success"))
    summary = summary_task().execute(context)

    written = json.loads(read_text(boto3.client("s3"), f"{PREFIX}/runs/{DAY}/summary.json"))
    assert written == summary
    assert (summary["day"], summary["images"], summary["routed"], summary["labels"]["converted"]) == (
        DAY,
        40,
        3,
        3,
    )
    assert summary["cost"]["reviews"] == 0.24
    assert summary["validation_map"]["serving"] is None  # no endpoint in this account: unknown, not 0
    extra = context["outlet_events"][ASSET].extra
    assert extra["summary"] == summary
    assert extra["uri"] == f"s3://{BUCKET}/m"
    assert extra["summary_uri"] == f"s3://{BUCKET}/{PREFIX}/runs/{DAY}/summary.json"


def test_a_rerun_with_the_same_record_skips_and_emits_no_second_asset_event(aws: Any) -> None:
    results, states = day_results(40), dict.fromkeys(TASKS[:4], "success")
    summary_task().execute(task_context(results, states))
    rerun = task_context(results, states)
    with pytest.raises(AirflowSkipException, match="already says this"):
        summary_task().execute(rerun)
    assert ASSET not in rerun["outlet_events"]
    # a rerun that changed something writes a new record
    changed = summary_task().execute(task_context(day_results(41), states))
    assert changed["images"] == 41


def test_the_nth_empty_day_in_a_row_sends_one_alert(aws: Any) -> None:
    sns, sqs = boto3.client("sns", region_name=REGION), boto3.client("sqs", region_name=REGION)
    topic = sns.create_topic(Name="loop-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="alerts")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    route = AlertRoute(
        SNS_NOTIFIER, {"aws_conn_id": None, "target_arn": topic, "region_name": REGION}, "message"
    )
    states = dict.fromkeys(TASKS[:4], "success")
    first = date.fromisoformat(DAY)
    for offset in range(4):  # four empty days; the alert is due on the third only
        day = (first + timedelta(days=offset)).isoformat()
        task = summary_task(day=day, alert_route=route, empty_days_alert=3)
        task.execute(task_context(day_results(0), states))

    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    bodies = [json.loads(message["Body"]) for message in messages]
    assert len(bodies) == 1
    assert bodies[0]["Subject"] == "Active learning active_learning: no images for 3 days"
    days = ", ".join((first + timedelta(days=offset)).isoformat() for offset in range(3))
    assert f"no image under incoming/<day>/ on 3 days in a row ({days})" in bodies[0]["Message"]
