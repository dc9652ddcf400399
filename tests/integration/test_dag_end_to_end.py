"""The real active_learning DAG, run by Airflow (``airflow dags test``) for one day on the local AWS."""

from __future__ import annotations

import json

from tests.integration.conftest import EndToEndDay
from tools.airflow_runs import ENDPOINT
from tools.seed import BUCKET, INITIAL_MODEL, PREFIX, VALIDATION_MANIFEST


def test_one_day_of_the_loop_trains_and_updates_the_endpoint(end_to_end_day: EndToEndDay) -> None:
    assert end_to_end_day.returncode == 0, end_to_end_day.stdout + end_to_end_day.airflow_log[-5000:]
    initial, day = json.loads((end_to_end_day.output / "summary.json").read_text())
    assert day["day"] == "2026-11-23"
    assert day["images"] == 30
    assert 0 < day["reviewed"] < 30
    assert day["loops_completed"] == day["reviewed"]
    assert day["manifest_lines"] == day["reviewed"]  # every reviewed scene has objects
    assert day["training_job"] != "skipped"
    assert day["gate"] == "updated"
    assert day["endpoint_config"] != "-"
    # the summary's counts come from runs/2026-11-23/: the run processed the day it was given
    assert day["held_out_map"] > initial["held_out_map"]


def test_every_aws_response_of_the_day_matches_botocore_output_shapes(end_to_end_day: EndToEndDay) -> None:
    """What the emulator and moto answered the DAG (and the demo) is what AWS may answer."""
    assert end_to_end_day.returncode == 0, end_to_end_day.stdout[-3000:]
    services = {call["service"] for call in end_to_end_day.calls}
    assert {"s3", "sagemaker", "sagemaker-runtime", "sagemaker-a2i-runtime"} <= services
    broken = sorted(
        {
            f"{call['service']}:{call['operation']} {error}"
            for call in end_to_end_day.calls
            for error in call["contract_errors"]
        }
    )
    assert not broken, "\n".join(broken)


def split_dataset(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` as an OpenLineage (namespace, name)."""
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    return f"s3://{bucket}", key


def test_openlineage_events_name_what_each_task_read_and_wrote(end_to_end_day: EndToEndDay) -> None:
    """The COMPLETE events of the four tasks with lineage (docs/lineage.md) carry the datasets, named
    as the Amazon provider names S3 locations, and join into one graph: incoming images to the
    endpoint serving the new model."""
    assert end_to_end_day.returncode == 0, end_to_end_day.stdout[-3000:]
    complete = {
        event["job"]["name"].removeprefix("active_learning."): event
        for event in end_to_end_day.lineage_events
        if event["eventType"] == "COMPLETE"
    }

    def datasets(task: str, kind: str) -> list[tuple[str, str]]:
        return [(dataset["namespace"], dataset["name"]) for dataset in complete[task][kind]]

    _, day = json.loads((end_to_end_day.output / "summary.json").read_text())
    job = day["training_job"]
    s3 = f"s3://{BUCKET}"
    runs = f"{PREFIX}/runs/2026-11-23"
    endpoint = ("arn:aws:sagemaker:us-east-1:123456789012", f"endpoint/{ENDPOINT}")
    model = (s3, f"{PREFIX}/training/{job}/output/model.tar.gz")

    assert datasets("batch_predict", "inputs") == [(s3, f"{PREFIX}/incoming/2026-11-23/"), endpoint]
    assert datasets("batch_predict", "outputs") == [
        (s3, f"{runs}/predictions.jsonl"),
        (s3, f"{runs}/quarantine.jsonl"),
    ]
    assert datasets("augmented_manifest", "inputs") == [
        (s3, f"{runs}/human-loops.jsonl"),
        (s3, f"{runs}/predictions.jsonl"),
        (s3, f"{PREFIX}/a2i-output/"),
    ]
    assert datasets("augmented_manifest", "outputs") == [(s3, f"{runs}/augmented.manifest")]
    assert datasets("incremental_training", "inputs") == [
        (s3, f"{runs}/augmented.manifest"),
        (s3, f"{PREFIX}/training/{job}/input/train.manifest"),
        # the demo's fixed validation manifest and initial model (tools.seed)
        split_dataset(VALIDATION_MANIFEST),
        split_dataset(INITIAL_MODEL),
    ]
    assert datasets("incremental_training", "outputs") == [model]
    assert datasets("update_endpoint", "inputs") == [model]
    assert datasets("update_endpoint", "outputs") == [endpoint]
