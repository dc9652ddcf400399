"""The evaluation gate, the optional approval and the endpoint update, against moto's SageMaker.

moto does not implement ``UpdateEndpoint``: a minimal fake validates the request against botocore's
model and applies it to moto's endpoint (or, for a rollback, keeps the old config and sets the
failure reason, as SageMaker does).
"""

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
from airflow.providers.standard.operators.hitl import ApprovalOperator
from botocore.validate import validate_parameters
from moto import mock_aws
from moto.sagemaker.models import sagemaker_backends

from active_learning.day_summary import Prices
from active_learning.naming import endpoint_config_name, model_name
from active_learning.operators.endpoint import (
    EvaluationGateOperator,
    OptionalApprovalOperator,
    UpdateEndpointOperator,
)
from active_learning.training_data import (
    TAG_REJECTED,
    TAG_TRAINING_JOB,
    TAG_TRAINING_LINES,
    TAG_VALIDATION_MAP,
)

ACCOUNT = "123456789012"
PRICES = Prices(review_per_object=0.08, training_per_hour=3.825, transform_per_hour=0.24)
REGION = "us-east-1"
BUCKET = "my-bucket"
ENDPOINT = "object-detection"
IMAGE = f"123.dkr.ecr.{REGION}.amazonaws.com/object-detection:1"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/A2IRole"
INSTANCE = "ml.m4.xlarge"
SETTINGS = {
    "bucket": BUCKET,
    "role_arn": ROLE_ARN,
    "workteam_arn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:workteam/private-crowd/reviewers",
    "endpoint_name": ENDPOINT,
}
SERVING_ARTIFACT = f"s3://{BUCKET}/active-learning/training/seed/output/model.tar.gz"
SERVING_MODEL = model_name("active-learning", SERVING_ARTIFACT)
SERVING_CONFIG = endpoint_config_name("active-learning", SERVING_MODEL, {"instance": INSTANCE})
JOB = "active-learning-20261126-0a1b2c3d"
NEW_ARTIFACT = f"s3://{BUCKET}/active-learning/training/{JOB}/output/model.tar.gz"
NEW_MODEL = model_name("active-learning", NEW_ARTIFACT)
NEW_CONFIG = endpoint_config_name("active-learning", NEW_MODEL, {"instance": INSTANCE})
TRAINING = {
    "training_job_name": JOB,
    "model_data_url": NEW_ARTIFACT,
    "validation_map": 0.6,
    "training_lines": 42,
}
ROLLBACK_REASON = "Endpoint update was rolled back: alarm endpoint-5xx went into ALARM state"


def _backend() -> Any:
    return sagemaker_backends[ACCOUNT][REGION]


@pytest.fixture
def context() -> dict[str, Any]:
    return {"ti": mock.MagicMock()}


def _serve(sm: Any, tags: dict[str, str]) -> None:
    sm.create_model(
        ModelName=SERVING_MODEL,
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": SERVING_ARTIFACT},
        ExecutionRoleArn=ROLE_ARN,
        Tags=[{"Key": key, "Value": value} for key, value in tags.items()],
    )
    sm.create_endpoint_config(
        EndpointConfigName=SERVING_CONFIG,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": SERVING_MODEL,
                "InitialInstanceCount": 1,
                "InstanceType": INSTANCE,
            }
        ],
    )
    sm.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=SERVING_CONFIG)


def _train(sm: Any, name: str = JOB, base_model: str = SERVING_ARTIFACT) -> None:
    """A completed training job (moto finishes them at once) that started from ``base_model``."""
    sm.create_training_job(
        TrainingJobName=name,
        AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "Pipe"},
        RoleArn=ROLE_ARN,
        InputDataConfig=[
            {
                "ChannelName": "model",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": base_model}},
                "ContentType": "application/x-sagemaker-model",
                "InputMode": "File",
            }
        ],
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/active-learning/training/"},
        ResourceConfig={"InstanceType": "ml.p3.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50},
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
    )


# --- EvaluationGateOperator ------------------------------------------------------------------------


def _gate(training: dict[str, Any], **settings: Any) -> EvaluationGateOperator:
    return EvaluationGateOperator(
        task_id="evaluation_gate",
        prices=PRICES,
        settings={**SETTINGS, **settings},
        training=training,
        aws_conn_id=None,
        region_name=REGION,
    )


@pytest.mark.parametrize(
    ("new_map", "tolerance"), [(0.61, "0"), (0.6, "0"), (0.56, "0.05")], ids=["better", "equal", "tolerated"]
)
def test_gate_promotes_a_model_not_worse_than_the_serving_one(
    context: dict[str, Any], new_map: float, tolerance: str
) -> None:
    with mock_aws():
        sm = boto3.client("sagemaker", region_name=REGION)
        _serve(sm, {TAG_VALIDATION_MAP: "0.600000"})
        _train(sm)
        result = _gate({**TRAINING, "validation_map": new_map}, map_tolerance=tolerance).execute(context)

    assert result["promote"] is True
    assert (result["new_map"], result["serving_map"]) == (new_map, 0.6)


def test_the_gate_gives_the_approval_a_markdown_summary(context: dict[str, Any]) -> None:
    """Issue 18.6: the Required Action page shows this, not a raw dict."""
    context["ti"].dag_id = "active_learning__pets"
    with mock_aws():
        sm = boto3.client("sagemaker", region_name=REGION)
        _serve(sm, {TAG_VALIDATION_MAP: "0.600000"})
        _train(sm)
        gate = EvaluationGateOperator(
            task_id="evaluation_gate",
            prices=PRICES,
            settings=SETTINGS,
            training={**TRAINING, "validation_map": 0.61234, "training_lines": 57},
            day="2026-03-01",
            reviews=json.dumps({"completed": 9}),
            manifest={"converted": 8},
            aws_conn_id=None,
            region_name=REGION,
        )
        approval = gate.execute(context)["approval"]

    assert "trained for 2026-03-01" in approval
    assert "| new | 0.612 |" in approval
    assert "| serving | 0.600 |" in approval
    assert "Trained on 57 labelled images" in approval
    assert f"[{JOB}](https://console.aws.amazon.com/sagemaker/home?region={REGION}#/jobs/{JOB})" in approval
    assert "The day: 9 reviews completed, 8 new labels" in approval
    assert "Estimated cost of the day: $0.72 (reviews $0.72, training $0.00)" in approval
    assert "(/dags/active_learning__pets/plugin/learning)" in approval


def test_gate_skips_a_worse_model_with_the_reason(context: dict[str, Any]) -> None:
    with mock_aws():
        sm = boto3.client("sagemaker", region_name=REGION)
        _serve(sm, {TAG_VALIDATION_MAP: "0.600000"})
        _train(sm)
        gate = _gate({**TRAINING, "validation_map": 0.54}, map_tolerance="0.05")
        with pytest.raises(
            AirflowSkipException,
            match=r"new mAP 0\.5400 is worse than serving 0\.6000 beyond tolerance 0\.05",
        ):
            gate.execute(context)


def test_gate_promotes_over_the_initial_model_without_a_recorded_map(context: dict[str, Any]) -> None:
    with mock_aws():
        sm = boto3.client("sagemaker", region_name=REGION)
        _serve(sm, {TAG_TRAINING_LINES: "0"})
        _train(sm)
        result = _gate(TRAINING).execute(context)

    assert result["promote"] is True
    assert result["serving_map"] is None
    assert "no recorded mAP" in result["reason"]


# --- OptionalApprovalOperator ----------------------------------------------------------------------


def _approval(required: bool | str) -> OptionalApprovalOperator:
    return OptionalApprovalOperator(
        task_id="approve_update", subject="Update the endpoint?", required=required
    )


@pytest.mark.parametrize("required", [False, "False", "false", ""])
def test_approval_not_required_approves_without_asking(context: dict[str, Any], required: Any) -> None:
    with mock.patch.object(ApprovalOperator, "execute") as ask:
        result = _approval(required).execute(context)

    ask.assert_not_called()
    assert result["chosen_options"] == ["Approve"]


@pytest.mark.parametrize("required", [True, "True"])
def test_approval_required_asks_through_the_approval_operator(context: dict[str, Any], required: Any) -> None:
    with mock.patch.object(ApprovalOperator, "execute", return_value="asked") as ask:
        result = _approval(required).execute(context)

    ask.assert_called_once_with(context)
    assert result == "asked"


def test_approval_required_is_templated() -> None:
    assert "required" in OptionalApprovalOperator.template_fields


# --- UpdateEndpointOperator ------------------------------------------------------------------------


class FakeUpdateEndpoint:
    """``UpdateEndpoint`` as SageMaker does it, on moto's endpoint; ``rollback`` keeps the old config."""

    def __init__(self, client: Any, rollback: bool = False, status: str = "InService") -> None:
        self.input_shape = client.meta.service_model.operation_model("UpdateEndpoint").input_shape
        self.rollback = rollback
        self.status = status
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **params: Any) -> dict[str, Any]:
        validate_parameters(params, self.input_shape)
        self.calls.append(params)
        endpoint = _backend().endpoints[params["EndpointName"]]
        if self.rollback:
            endpoint.failure_reason = ROLLBACK_REASON
        else:
            config = _backend().endpoint_configs[params["EndpointConfigName"]]
            endpoint.endpoint_config_name = config.endpoint_config_name
            endpoint.production_variants = endpoint._process_production_variants(config.production_variants)
        endpoint.endpoint_status = self.status
        return {"EndpointArn": endpoint.arn}


@pytest.fixture
def aws() -> Iterator[Any]:
    """An endpoint serving the initial model, and a completed training job."""
    with mock_aws():
        sm = boto3.client("sagemaker", region_name=REGION)
        _serve(sm, {TAG_TRAINING_LINES: "0"})
        _train(sm)
        yield sm


def _update(
    rollback: bool = False, status: str = "InService", **kwargs: Any
) -> tuple[UpdateEndpointOperator, FakeUpdateEndpoint]:
    settings = {**SETTINGS, **kwargs.pop("settings", {})}
    op = UpdateEndpointOperator(
        task_id="update_endpoint",
        settings=settings,
        training=TRAINING,
        aws_conn_id=None,
        region_name=REGION,
        waiter_delay=1,
        waiter_max_attempts=2,
        **kwargs,
    )
    conn = op.hook.conn
    describe = conn.describe_training_job

    def describe_with_map(**params: Any) -> dict[str, Any]:  # moto reports only train:progress
        job = describe(**params)
        job["FinalMetricDataList"] = [
            *job.get("FinalMetricDataList", []),
            {"MetricName": "validation:mAP", "Value": 0.6, "Timestamp": datetime.now(UTC)},
        ]
        return job

    conn.describe_training_job = describe_with_map
    fake = FakeUpdateEndpoint(conn, rollback=rollback, status=status)
    conn.update_endpoint = fake
    return op, fake


def test_update_puts_the_trained_model_on_the_endpoint(aws: Any, context: dict[str, Any]) -> None:
    op, fake = _update(rollback_alarms=["endpoint-5xx", "endpoint-latency"])

    result = op.execute(context)

    assert result == {"endpoint_name": ENDPOINT, "endpoint_config_name": NEW_CONFIG, "deleted": []}
    model = aws.describe_model(ModelName=NEW_MODEL)
    assert model["PrimaryContainer"] == {"Image": IMAGE, "ModelDataUrl": NEW_ARTIFACT}
    assert op.hook.tags_of(model["ModelArn"]) == {
        TAG_VALIDATION_MAP: "0.600000",
        TAG_TRAINING_JOB: JOB,
        TAG_TRAINING_LINES: "42",
    }
    (variant,) = aws.describe_endpoint_config(EndpointConfigName=NEW_CONFIG)["ProductionVariants"]
    assert variant["ModelName"] == NEW_MODEL
    assert fake.calls == [
        {
            "EndpointName": ENDPOINT,
            "EndpointConfigName": NEW_CONFIG,
            "DeploymentConfig": {
                "BlueGreenUpdatePolicy": {
                    "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
                    "TerminationWaitInSeconds": 300,
                },
                "AutoRollbackConfiguration": {
                    "Alarms": [{"AlarmName": "endpoint-5xx"}, {"AlarmName": "endpoint-latency"}]
                },
            },
        }
    ]
    assert aws.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == NEW_CONFIG
    assert context["ti"].xcom_push.call_args.kwargs["key"] == "sagemaker_endpoint"


def test_update_without_alarms_has_no_auto_rollback(aws: Any, context: dict[str, Any]) -> None:
    op, fake = _update()

    op.execute(context)

    (call,) = fake.calls
    assert "AutoRollbackConfiguration" not in call["DeploymentConfig"]


def test_retry_after_a_successful_update_does_not_update_again(aws: Any, context: dict[str, Any]) -> None:
    first, _ = _update()
    done = first.execute(context)
    retry, fake = _update()

    assert retry.execute(context) == {**done, "deleted": []}
    assert fake.calls == []


def test_rollback_fails_once_and_marks_the_training_job_rejected(aws: Any, context: dict[str, Any]) -> None:
    """Issue 7.6: retrying would deploy the same model and roll back again; the tag makes the day's
    next training try start a new attempt instead of re-attaching to this job."""
    op, fake = _update(rollback=True, rollback_alarms=["endpoint-5xx"])

    with pytest.raises(
        AirflowFailException,
        match=rf"rolled back to {SERVING_CONFIG} instead of {NEW_CONFIG}: {ROLLBACK_REASON}",
    ):
        op.execute(context)
    assert len(fake.calls) == 1
    job_arn = aws.describe_training_job(TrainingJobName=JOB)["TrainingJobArn"]
    tags = {tag["Key"]: tag["Value"] for tag in aws.list_tags(ResourceArn=job_arn)["Tags"]}
    assert tags[TAG_REJECTED] == ROLLBACK_REASON
    assert aws.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == SERVING_CONFIG
    # Nothing was pruned: the config still in use and the serving model are there.
    aws.describe_endpoint_config(EndpointConfigName=SERVING_CONFIG)
    aws.describe_model(ModelName=SERVING_MODEL)


def test_retention_deletes_configs_and_models_beyond_keep_models(aws: Any, context: dict[str, Any]) -> None:
    old = []
    for n in range(1, 4):  # three older generations, created before the serving one
        artifact = f"s3://{BUCKET}/active-learning/training/old-{n}/output/model.tar.gz"
        model = model_name("active-learning", artifact)
        config = endpoint_config_name("active-learning", model, {"instance": INSTANCE})
        aws.create_model(
            ModelName=model,
            PrimaryContainer={"Image": IMAGE, "ModelDataUrl": artifact},
            ExecutionRoleArn=ROLE_ARN,
        )
        aws.create_endpoint_config(
            EndpointConfigName=config,
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": model,
                    "InitialInstanceCount": 1,
                    "InstanceType": INSTANCE,
                }
            ],
        )
        _backend()._models[model].creation_time = datetime(2026, 11, n)
        _backend().endpoint_configs[config].creation_time = datetime(2026, 11, n)
        old += [model, config]
    _backend()._models[SERVING_MODEL].creation_time = datetime(2026, 11, 10)
    _backend().endpoint_configs[SERVING_CONFIG].creation_time = datetime(2026, 11, 10)
    op, _ = _update(settings={"keep_models": "2"})

    result = op.execute(context)

    assert sorted(result["deleted"]) == sorted(old)
    configs = {c["EndpointConfigName"] for c in aws.list_endpoint_configs()["EndpointConfigs"]}
    models = {m["ModelName"] for m in aws.list_models()["Models"]}
    assert configs == {NEW_CONFIG, SERVING_CONFIG}
    assert models == {NEW_MODEL, SERVING_MODEL}


def test_deferrable_update_defers_and_completes_with_verification(aws: Any, context: dict[str, Any]) -> None:
    op, fake = _update(deferrable=True)

    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)

    assert len(fake.calls) == 1
    trigger = deferred.value.trigger
    assert isinstance(trigger, SageMakerTrigger)
    assert (trigger.job_type, trigger.job_name) == ("endpoint", ENDPOINT)
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.kwargs == {"previous_config": SERVING_CONFIG}  # kept by retention afterwards

    result = op.execute_complete(
        context, {"status": "success", "job_name": ENDPOINT}, **deferred.value.kwargs
    )

    assert result["endpoint_config_name"] == NEW_CONFIG
    assert len(fake.calls) == 1


def test_execute_complete_after_a_rollback_raises(aws: Any, context: dict[str, Any]) -> None:
    op, _ = _update(rollback=True, deferrable=True)
    with pytest.raises(TaskDeferred):
        op.execute(context)

    with pytest.raises(AirflowFailException, match=f"instead of {NEW_CONFIG}: {ROLLBACK_REASON}"):
        op.execute_complete(context, {"status": "success", "job_name": ENDPOINT})


def test_execute_complete_error_event_raises_with_the_endpoint_status(
    aws: Any, context: dict[str, Any]
) -> None:
    endpoint = _backend().endpoints[ENDPOINT]
    endpoint.endpoint_status = "UpdateRollbackFailed"
    endpoint.failure_reason = "Rollback failed: capacity"
    op, _ = _update(deferrable=True)

    with pytest.raises(
        AirflowException, match=r"did not finish: Waiter failed; status UpdateRollbackFailed: Rollback failed"
    ):
        op.execute_complete(context, {"status": "error", "message": "Waiter failed"})


def test_retry_while_the_earlier_update_is_under_way_waits_without_updating_again(
    aws: Any, context: dict[str, Any]
) -> None:
    first, _ = _update(status="Updating", deferrable=True)
    with pytest.raises(TaskDeferred):
        first.execute(context)
    retry, fake = _update()
    describe = retry.hook.conn.describe_endpoint

    def describe_then_finish(**params: Any) -> dict[str, Any]:
        response = describe(**params)
        _backend().endpoints[ENDPOINT].endpoint_status = "InService"  # the update finishes meanwhile
        return response

    retry.hook.conn.describe_endpoint = describe_then_finish

    assert retry.execute(context)["endpoint_config_name"] == NEW_CONFIG
    assert fake.calls == []


@pytest.mark.parametrize("status", ["UpdateRollbackFailed", "Failed", "OutOfService"])
def test_endpoint_that_cannot_be_updated_fails_at_once(
    aws: Any, context: dict[str, Any], status: str
) -> None:
    endpoint = _backend().endpoints[ENDPOINT]
    endpoint.endpoint_status = status
    endpoint.failure_reason = "Rollback failed: insufficient capacity"
    op, fake = _update()
    waiter = mock.MagicMock()
    op.hook.get_waiter = waiter

    with pytest.raises(AirflowException, match=f"is {status}, not updatable: Rollback failed: insufficient"):
        op.execute(context)
    assert fake.calls == []
    waiter.assert_not_called()


# --- compare-and-swap of the lineage (issue 15.1) ---------------------------------------------------

NEWER_JOB = "active-learning-20261128-4e5f6a7b"
NEWER_ARTIFACT = f"s3://{BUCKET}/active-learning/training/{NEWER_JOB}/output/model.tar.gz"


def _newer_model_serves(sm: Any) -> str:
    """Another day's update landed: the endpoint serves a model trained after ``JOB`` started."""
    _train(sm, NEWER_JOB)
    newer = model_name("active-learning", NEWER_ARTIFACT)
    sm.create_model(
        ModelName=newer,
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": NEWER_ARTIFACT},
        ExecutionRoleArn=ROLE_ARN,
    )
    config = endpoint_config_name("active-learning", newer, {"instance": INSTANCE})
    sm.create_endpoint_config(
        EndpointConfigName=config,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": newer,
                "InitialInstanceCount": 1,
                "InstanceType": INSTANCE,
            }
        ],
    )
    endpoint = _backend().endpoints[ENDPOINT]
    endpoint.endpoint_config_name = config
    endpoint.production_variants = endpoint._process_production_variants(
        _backend().endpoint_configs[config].production_variants
    )
    return config


def test_clearing_an_old_days_update_never_puts_its_older_model_back(
    aws: Any, context: dict[str, Any]
) -> None:
    newer_config = _newer_model_serves(aws)
    op, fake = _update()

    with pytest.raises(AirflowSkipException) as skipped:
        op.execute(context)

    message = str(skipped.value)
    assert f"{JOB} was trained from {SERVING_ARTIFACT}" in message
    assert f"now serves {model_name('active-learning', NEWER_ARTIFACT)} ({NEWER_ARTIFACT})" in message
    assert fake.calls == []
    assert aws.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == newer_config
    # refused before anything was created for the old model
    assert NEW_CONFIG not in {c["EndpointConfigName"] for c in aws.list_endpoint_configs()["EndpointConfigs"]}


def test_the_gate_skips_a_model_trained_from_one_that_no_longer_serves(context: dict[str, Any]) -> None:
    with mock_aws():
        sm = boto3.client("sagemaker", region_name=REGION)
        _serve(sm, {TAG_VALIDATION_MAP: "0.100000"})
        _train(sm)
        _newer_model_serves(sm)
        with pytest.raises(AirflowSkipException, match=f"{JOB} was trained from {SERVING_ARTIFACT}"):
            _gate({**TRAINING, "validation_map": 0.99}).execute(context)


def test_an_update_that_lands_while_waiting_is_not_taken_for_a_rollback(
    aws: Any, context: dict[str, Any]
) -> None:
    """A try found another update under way and waited: afterwards a third model serves, so this
    job's update is refused (skipped), not reported as a rollback of its own model."""
    _backend().endpoints[ENDPOINT].endpoint_status = "Updating"
    op, fake = _update(deferrable=True)
    with pytest.raises(TaskDeferred):
        op.execute(context)
    _newer_model_serves(aws)
    _backend().endpoints[ENDPOINT].endpoint_status = "InService"

    with pytest.raises(AirflowSkipException, match="another update landed since"):
        op.execute_complete(context, {"status": "success", "job_name": ENDPOINT})
    assert fake.calls == []
    job_arn = aws.describe_training_job(TrainingJobName=JOB)["TrainingJobArn"]
    assert TAG_REJECTED not in {tag["Key"] for tag in aws.list_tags(ResourceArn=job_arn)["Tags"]}
