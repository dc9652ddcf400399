"""IncrementalTrainingOperator against moto's S3 and SageMaker (training jobs complete at once there)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import boto3
import pytest
from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger
from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    AirflowSkipException,
    TaskDeferred,
)
from moto import mock_aws
from moto.sagemaker.models import sagemaker_backends

from active_learning.naming import endpoint_config_name, model_name, training_job_name
from active_learning.operators.training import IncrementalTrainingOperator
from active_learning.training_data import TAG_BASE_MODEL, TAG_REJECTED, TAG_TRAINING_LINES

ACCOUNT = "123456789012"
REGION = "us-east-1"
BUCKET = "my-bucket"
ENDPOINT = "object-detection"
IMAGE = f"123.dkr.ecr.{REGION}.amazonaws.com/object-detection:1"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/A2IRole"
SETTINGS = {
    "bucket": BUCKET,
    "role_arn": ROLE_ARN,
    "workteam_arn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:workteam/private-crowd/reviewers",
    "endpoint_name": ENDPOINT,
    "min_new_labels": 5,
}
SERVING_ARTIFACT = f"s3://{BUCKET}/active-learning/training/seed/output/model.tar.gz"
DAY = "2026-11-26"
JOB = training_job_name("active-learning", DAY, SERVING_ARTIFACT)
LINES_PER_DAY = {"2026-11-25": 12, "2026-11-26": 13, "2026-11-27": 7}
ALL_LINES = 32  # every day's, a later day's included: all labels so far
FIXED_VALIDATION = f"s3://{BUCKET}/active-learning/validation/fixed.manifest"


def _line(day: str, n: int) -> dict[str, Any]:
    return {
        "source-ref": f"s3://{BUCKET}/active-learning/incoming/{day}/image-{n:03d}.jpg",
        "a2i-retraining": {
            "annotations": [{"class_id": n % 20, "left": 10, "top": 20, "width": 30, "height": 40}],
            "image_size": [{"width": 640, "height": 480, "depth": 3}],
        },
        "a2i-retraining-metadata": {
            "class-map": {str(n % 20): "class"},
            "human-annotated": "yes",
            "type": "groundtruth/object-detection",
        },
    }


def _refs(lines: list[dict[str, Any]]) -> set[str]:
    return {line["source-ref"] for line in lines}


def _lines_of(day: str) -> list[dict[str, Any]]:
    return [_line(day, n) for n in range(LINES_PER_DAY[day])]


def _serve(training_lines: str = "0") -> None:
    """An endpoint serving a model trained on ``training_lines`` lines (as a previous update leaves it)."""
    sm = boto3.client("sagemaker", region_name=REGION)
    model = model_name("active-learning", SERVING_ARTIFACT)
    config = endpoint_config_name("active-learning", model, {"instance": "ml.m4.xlarge"})
    sm.create_model(
        ModelName=model,
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": SERVING_ARTIFACT},
        ExecutionRoleArn=ROLE_ARN,
        Tags=[{"Key": TAG_TRAINING_LINES, "Value": training_lines}],
    )
    sm.create_endpoint_config(
        EndpointConfigName=config,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": model,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m4.xlarge",
            }
        ],
    )
    sm.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=config)


@pytest.fixture
def s3() -> Iterator[Any]:
    """moto with the labelled days in S3 (a later day's too: whichever day trains next uses them)."""
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET)
        for day in LINES_PER_DAY:
            body = "".join(json.dumps(line) + "\n" for line in _lines_of(day))
            client.put_object(Bucket=BUCKET, Key=f"active-learning/runs/{day}/augmented.manifest", Body=body)
        # Other objects of the run folders are not training data.
        client.put_object(Bucket=BUCKET, Key=f"active-learning/runs/{DAY}/predictions.jsonl", Body="{}\n")
        yield client


@pytest.fixture
def serving(s3: Any) -> None:
    _serve()


@pytest.fixture
def context() -> dict[str, Any]:
    return {"ti": mock.MagicMock()}


def _read(s3: Any, key: str) -> list[dict[str, Any]]:
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
    return [json.loads(line) for line in body.splitlines() if line]


def _operator(settings: dict[str, Any] | None = None, **kwargs: Any) -> IncrementalTrainingOperator:
    op = IncrementalTrainingOperator(
        task_id="incremental_training",
        settings=settings or SETTINGS,
        day=DAY,
        image_uri=IMAGE,
        aws_conn_id=None,
        region_name=REGION,
        waiter_delay=1,
        waiter_max_attempts=2,
        **kwargs,
    )
    # moto reports only train:progress; the built-in algorithm also reports validation:mAP.
    describe = op.hook.conn.describe_training_job

    def describe_with_map(**params: Any) -> dict[str, Any]:
        job = describe(**params)
        if job["TrainingJobStatus"] == "Completed":
            job["FinalMetricDataList"] = [
                *job.get("FinalMetricDataList", []),
                {"MetricName": "validation:mAP", "Value": 0.6, "Timestamp": datetime.now(UTC)},
            ]
        return job

    op.hook.conn.describe_training_job = describe_with_map
    return op


def _spy_create(op: IncrementalTrainingOperator) -> mock.MagicMock:
    spy = mock.MagicMock(wraps=op.hook.conn.create_training_job)
    op.hook.conn.create_training_job = spy
    return spy


@pytest.mark.usefixtures("serving")
def test_starts_one_job_on_every_label_so_far(s3: Any, context: dict[str, Any]) -> None:
    op = _operator()
    create = _spy_create(op)

    result = op.execute(context)

    create.assert_called_once()
    request = create.call_args.kwargs
    assert request["TrainingJobName"] == JOB
    assert request["AlgorithmSpecification"] == {"TrainingImage": IMAGE, "TrainingInputMode": "Pipe"}
    assert request["RoleArn"] == ROLE_ARN
    input_prefix = f"active-learning/training/{JOB}/input"
    channels = {channel["ChannelName"]: channel for channel in request["InputDataConfig"]}
    assert set(channels) == {"train", "validation", "model"}
    for name in ("train", "validation"):
        channel = channels[name]
        source = channel["DataSource"]["S3DataSource"]
        assert source["S3DataType"] == "AugmentedManifestFile"
        assert source["S3Uri"] == f"s3://{BUCKET}/{input_prefix}/{name}.manifest"
        assert source["AttributeNames"] == ["source-ref", "a2i-retraining"]
        assert channel["RecordWrapperType"] == "RecordIO"
        assert channel["ContentType"] == "application/x-recordio"
        assert channel["InputMode"] == "Pipe"
    model = channels["model"]
    assert model["ContentType"] == "application/x-sagemaker-model"
    assert model["InputMode"] == "File"
    assert model["DataSource"]["S3DataSource"]["S3DataType"] == "S3Prefix"
    assert model["DataSource"]["S3DataSource"]["S3Uri"] == SERVING_ARTIFACT
    assert request["OutputDataConfig"] == {"S3OutputPath": f"s3://{BUCKET}/active-learning/training/"}

    train = _read(s3, f"{input_prefix}/train.manifest")
    validation = _read(s3, f"{input_prefix}/validation.manifest")
    assert train
    assert validation
    assert len(train) + len(validation) == ALL_LINES
    assert _refs(train) | _refs(validation) == _refs(
        [line for day in LINES_PER_DAY for line in _lines_of(day)]
    )
    assert not _refs(train) & _refs(validation)

    hyperparameters = request["HyperParameters"]
    assert all(isinstance(value, str) for value in hyperparameters.values())
    assert hyperparameters["use_pretrained_model"] == "0"
    assert hyperparameters["num_training_samples"] == str(len(train))
    assert hyperparameters["num_classes"] == "20"
    tags = {tag["Key"]: tag["Value"] for tag in request["Tags"]}
    assert tags == {TAG_TRAINING_LINES: str(ALL_LINES), TAG_BASE_MODEL: SERVING_ARTIFACT}

    assert result == {
        "training_job_name": JOB,
        "model_data_url": f"s3://{BUCKET}/active-learning/training/{JOB}/output/model.tar.gz",
        "validation_map": 0.6,
        "training_lines": ALL_LINES,
    }
    assert context["ti"].xcom_push.call_args.kwargs["key"] == "sagemaker_training_job"
    assert context["ti"].xcom_push.call_args.kwargs["value"]["job_name"] == JOB


@pytest.mark.usefixtures("serving")
def test_fixed_validation_manifest_puts_every_line_in_train(s3: Any, context: dict[str, Any]) -> None:
    op = _operator({**SETTINGS, "validation_manifest_uri": FIXED_VALIDATION})
    create = _spy_create(op)

    op.execute(context)

    request = create.call_args.kwargs
    channels = {channel["ChannelName"]: channel for channel in request["InputDataConfig"]}
    assert channels["validation"]["DataSource"]["S3DataSource"]["S3Uri"] == FIXED_VALIDATION
    train = _read(s3, f"active-learning/training/{JOB}/input/train.manifest")
    assert len(train) == ALL_LINES
    assert request["HyperParameters"]["num_training_samples"] == str(ALL_LINES)


@pytest.mark.usefixtures("serving")
def test_retry_reattaches_to_the_job_it_started(context: dict[str, Any]) -> None:
    first = _operator().execute(context)
    retry = _operator()
    create = _spy_create(retry)

    assert retry.execute(context) == first
    create.assert_not_called()


@pytest.mark.usefixtures("serving")
def test_retry_after_a_failed_job_starts_the_next_attempt(context: dict[str, Any]) -> None:
    first = _operator()
    create_first = first.hook.conn.create_training_job

    def create_then_fail(**request: Any) -> dict[str, Any]:
        response = create_first(**request)
        job = sagemaker_backends[ACCOUNT][REGION].training_jobs[request["TrainingJobName"]]
        job.training_job_status = "Failed"
        job.failure_reason = "ClientError: ImageSize mismatch"
        return response

    first.hook.conn.create_training_job = create_then_fail
    with pytest.raises(AirflowException, match=f"{JOB} is Failed: ClientError: ImageSize mismatch"):
        first.execute(context)

    retry = _operator()
    create = _spy_create(retry)
    result = retry.execute(context)

    create.assert_called_once()
    assert create.call_args.kwargs["TrainingJobName"] == f"{JOB}-r2"
    assert result["training_job_name"] == f"{JOB}-r2"
    assert result["model_data_url"].endswith(f"/{JOB}-r2/output/model.tar.gz")


@pytest.mark.usefixtures("serving")
def test_a_completed_job_whose_model_was_rolled_back_is_followed_by_a_new_attempt(
    context: dict[str, Any],
) -> None:
    """Issue 7.6: re-attaching to it would roll the endpoint back again, day after day."""
    first = _operator().execute(context)
    sm = boto3.client("sagemaker", region_name=REGION)
    job_arn = sm.describe_training_job(TrainingJobName=first["training_job_name"])["TrainingJobArn"]
    sm.add_tags(ResourceArn=job_arn, Tags=[{"Key": TAG_REJECTED, "Value": "the model did not load"}])

    retry = _operator()
    create = _spy_create(retry)
    result = retry.execute(context)

    create.assert_called_once()
    assert result["training_job_name"] == f"{JOB}-r2"


def test_no_new_label_never_trains_even_with_min_new_labels_0(s3: Any, context: dict[str, Any]) -> None:
    """Issue 7.5: a rerun of a day whose model already serves found 0 new lines and trained again."""
    _serve(training_lines=str(ALL_LINES))
    op = _operator({**SETTINGS, "min_new_labels": 0})
    create = _spy_create(op)

    with pytest.raises(AirflowSkipException, match=r"0 new labelled images .*min_new_labels=0"):
        op.execute(context)
    create.assert_not_called()


def test_too_few_new_labels_skips_without_training(s3: Any, context: dict[str, Any]) -> None:
    _serve(training_lines=str(ALL_LINES - 4))
    op = _operator()
    create = _spy_create(op)

    with pytest.raises(
        AirflowSkipException,
        match=r"4 new labelled images since the serving model, which was trained on 28 of the 32 labelled "
        r"so far \(min_new_labels=5\)",
    ):
        op.execute(context)
    create.assert_not_called()


@pytest.mark.usefixtures("serving")
def test_deferrable_defers_to_the_training_trigger(context: dict[str, Any]) -> None:
    op = _operator(deferrable=True)
    create = _spy_create(op)

    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)

    create.assert_called_once()
    trigger = deferred.value.trigger
    assert isinstance(trigger, SageMakerTrigger)
    assert (trigger.job_type, trigger.job_name) == ("training", JOB)
    assert deferred.value.method_name == "execute_complete"
    assert op.execute_complete(context, {"status": "success", "job_name": JOB})["training_job_name"] == JOB


@pytest.mark.usefixtures("serving")
def test_execute_complete_with_a_timeout_event_raises(context: dict[str, Any]) -> None:
    with pytest.raises(AirflowException, match="Waiting for training job failed: max attempts"):
        _operator(deferrable=True).execute_complete(
            context, {"status": "timeout", "job_name": JOB, "message": "max attempts reached"}
        )


@pytest.mark.usefixtures("s3")
def test_no_endpoint_raises(context: dict[str, Any]) -> None:
    with pytest.raises(AirflowException, match=f"Endpoint {ENDPOINT} does not exist"):
        _operator().execute(context)


def test_a_serving_model_trained_on_more_lines_than_remain_skips_with_a_clear_reason(
    s3: Any, context: dict[str, Any]
) -> None:
    """Issue 15.10: the message read "-8 new labelled images"."""
    _serve(training_lines=str(ALL_LINES + 8))
    with pytest.raises(AirflowSkipException, match=r"^0 new labelled images .* trained on 40 of the 32 "):
        _operator().execute(context)


def test_a_manifest_line_outside_the_loops_prefix_fails_training_naming_the_day_and_line(
    s3: Any, context: dict[str, Any]
) -> None:
    """Issue 15.8: it was copied into train.manifest, for SageMaker to read with the execution role."""
    _serve()
    lines = [
        *_lines_of("2026-11-26"),
        {**_line("2026-11-26", 99), "source-ref": "s3://other-team/private/a.jpg"},
    ]
    s3.put_object(
        Bucket=BUCKET,
        Key="active-learning/runs/2026-11-26/augmented.manifest",
        Body="".join(json.dumps(line) + "\n" for line in lines),
    )
    op = _operator()
    create = _spy_create(op)

    with pytest.raises(
        AirflowFailException,
        match=r"the source-ref of line 14 of runs/2026-11-26/augmented.manifest "
        r"'s3://other-team/private/a.jpg' is outside s3://my-bucket/active-learning/",
    ):
        op.execute(context)
    create.assert_not_called()
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="active-learning/training/")


@pytest.mark.usefixtures("serving")
def test_lineage_names_the_channels_and_artifact_of_the_job_it_ran(context: dict[str, Any]) -> None:
    """OpenLineage (docs/lineage.md): from the description the result read, no call of its own."""
    op = _operator()
    result = op.execute(context)

    lineage = op.get_openlineage_facets_on_complete(mock.Mock(state="success"))

    datasets = [f"{dataset.namespace}/{dataset.name}" for dataset in lineage.inputs]
    assert datasets == [
        f"s3://{BUCKET}/active-learning/runs/{DAY}/augmented.manifest",
        f"s3://{BUCKET}/active-learning/training/{JOB}/input/train.manifest",
        f"s3://{BUCKET}/active-learning/training/{JOB}/input/validation.manifest",
        SERVING_ARTIFACT,
    ]
    assert [f"{dataset.namespace}/{dataset.name}" for dataset in lineage.outputs] == [
        result["model_data_url"]
    ]
