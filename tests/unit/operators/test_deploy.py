"""DeployModelOperator against moto's SageMaker (endpoints are InService at once there)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException, TaskDeferred
from moto import mock_aws
from moto.sagemaker.models import sagemaker_backends

from active_learning.hooks.models import ModelLineageHook
from active_learning.naming import endpoint_config_name, model_name
from active_learning.operators.deploy import DeployModelOperator
from active_learning.training_data import TAG_TRAINING_LINES

ACCOUNT = "123456789012"
REGION = "us-east-1"
ENDPOINT = "object-detection"
IMAGE = f"123.dkr.ecr.{REGION}.amazonaws.com/object-detection:1"
INITIAL_MODEL = "s3://my-bucket/active-learning/models/initial/model.tar.gz"
SETTINGS = {
    "bucket": "my-bucket",
    "role_arn": f"arn:aws:iam::{ACCOUNT}:role/A2IRole",
    "workteam_arn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:workteam/private-crowd/reviewers",
    "endpoint_name": ENDPOINT,
}
MODEL = model_name("active-learning", INITIAL_MODEL)
CONFIG = endpoint_config_name("active-learning", MODEL, {"instance": "ml.m4.xlarge"})


@pytest.fixture(autouse=True)
def _aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def context() -> dict[str, Any]:
    return {"ti": mock.MagicMock()}


def _operator(**kwargs: Any) -> DeployModelOperator:
    kwargs.setdefault("image_uri", IMAGE)
    return DeployModelOperator(
        task_id="deploy_model",
        settings={**SETTINGS, "initial_model_data_url": INITIAL_MODEL, **kwargs.pop("settings", {})},
        aws_conn_id=None,
        region_name=REGION,
        waiter_delay=1,
        waiter_max_attempts=3,
        **kwargs,
    )


def _spy(hook: ModelLineageHook, *methods: str) -> dict[str, mock.MagicMock]:
    spies = {}
    for method in methods:
        spies[method] = mock.MagicMock(wraps=getattr(hook.conn, method))
        setattr(hook.conn, method, spies[method])
    return spies


CREATES = ("create_model", "create_endpoint_config", "create_endpoint")


def test_absent_endpoint_is_created_from_the_initial_model(context: dict[str, Any]) -> None:
    op = _operator()
    spies = _spy(op.hook, *CREATES)

    result = op.execute(context)

    assert result == {
        "endpoint_name": ENDPOINT,
        "endpoint_status": "InService",
        "endpoint_config_name": CONFIG,
        "model_name": MODEL,
        "model_data_url": INITIAL_MODEL,
        "created": True,
    }
    assert {name: spy.call_count for name, spy in spies.items()} == dict.fromkeys(CREATES, 1)
    conn = op.hook.conn
    model = conn.describe_model(ModelName=MODEL)
    assert model["PrimaryContainer"] == {"Image": IMAGE, "ModelDataUrl": INITIAL_MODEL}
    assert model["ExecutionRoleArn"] == SETTINGS["role_arn"]
    assert op.hook.tags_of(model["ModelArn"]) == {TAG_TRAINING_LINES: "0"}
    (variant,) = conn.describe_endpoint_config(EndpointConfigName=CONFIG)["ProductionVariants"]
    assert (variant["ModelName"], variant["InstanceType"]) == (MODEL, "ml.m4.xlarge")
    context["ti"].xcom_push.assert_called_once()
    assert context["ti"].xcom_push.call_args.kwargs["key"] == "sagemaker_endpoint"
    assert context["ti"].xcom_push.call_args.kwargs["value"]["endpoint_name"] == ENDPOINT


def test_present_in_service_endpoint_is_left_alone(context: dict[str, Any]) -> None:
    _operator().execute(context)
    rerun = _operator(
        settings={"initial_model_data_url": "s3://my-bucket/active-learning/models/other/model.tar.gz"}
    )
    spies = _spy(rerun.hook, *CREATES)

    result = rerun.execute(context)

    assert result["created"] is False
    assert result["model_data_url"] == INITIAL_MODEL
    assert result["endpoint_config_name"] == CONFIG
    assert all(spy.call_count == 0 for spy in spies.values())


def test_an_endpoint_still_being_created_is_waited_for_and_reported_as_not_created(
    context: dict[str, Any],
) -> None:
    _operator().execute(context)
    sagemaker_backends[ACCOUNT][REGION].endpoints[ENDPOINT].endpoint_status = "Creating"
    op = _operator(deferrable=True)
    spies = _spy(op.hook, *CREATES)

    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)

    assert deferred.value.kwargs == {"created": False}
    assert all(spy.call_count == 0 for spy in spies.values())


def test_failed_endpoint_raises_with_the_failure_reason(context: dict[str, Any]) -> None:
    _operator().execute(context)
    endpoint = sagemaker_backends[ACCOUNT][REGION].endpoints[ENDPOINT]
    endpoint.endpoint_status = "Failed"
    endpoint.failure_reason = "The primary container for production variant AllTraffic did not pass the ping"
    op = _operator()
    spies = _spy(op.hook, *CREATES)

    with pytest.raises(AirflowException, match=r"is Failed: The primary container .* did not pass the ping"):
        op.execute(context)
    assert all(spy.call_count == 0 for spy in spies.values())


def test_endpoint_failing_while_created_raises_with_the_failure_reason(context: dict[str, Any]) -> None:
    op = _operator()
    create = op.hook.conn.create_endpoint

    def create_then_fail(**params: Any) -> dict[str, Any]:
        response = create(**params)
        endpoint = sagemaker_backends[ACCOUNT][REGION].endpoints[params["EndpointName"]]
        endpoint.endpoint_status = "Failed"
        endpoint.failure_reason = "Failed to download model data"
        return response

    op.hook.conn.create_endpoint = create_then_fail

    with pytest.raises(
        AirflowException, match=r"did not become InService .* Failed: Failed to download model"
    ):
        op.execute(context)


def test_deferrable_creation_defers_to_the_endpoint_trigger(context: dict[str, Any]) -> None:
    op = _operator(deferrable=True)

    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)

    trigger = deferred.value.trigger
    assert isinstance(trigger, SageMakerTrigger)
    assert (trigger.job_type, trigger.job_name) == ("endpoint", ENDPOINT)
    classpath, kwargs = trigger.serialize()
    assert classpath == "active_learning.triggers.aws_waits.SageMakerWaitTrigger"
    assert kwargs["carried_requests"] == {"calls": 0, "retried_calls": 0, "retries": {}}  # none watched here
    assert kwargs["waiter_delay"] == 1
    assert kwargs["waiter_max_attempts"] == 3
    assert kwargs["region_name"] == REGION
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.kwargs == {"created": True}  # reaches execute_complete after the wait
    assert op.hook.conn.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == CONFIG
    assert op.execute_complete(context, {"status": "success"}, **deferred.value.kwargs)["created"] is True

    result = op.execute_complete(context, {"status": "success", "job_name": ENDPOINT})
    assert result["created"] is True
    assert result["model_name"] == MODEL


@pytest.mark.parametrize(
    ("event", "match"),
    [
        ({"status": "error", "message": "Endpoint failed: ping"}, "did not become InService: Endpoint"),
        (None, "event is None"),
    ],
)
def test_execute_complete_error_event_raises(
    context: dict[str, Any], event: dict[str, Any] | None, match: str
) -> None:
    with pytest.raises(AirflowException, match=match):
        _operator(deferrable=True).execute_complete(context, event)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://example.com/model.tar.gz", "must be s3://bucket/key"),
        ("my-bucket/models/initial/model.tar.gz", "must be s3://bucket/key"),
        ("s3://", "must be s3://bucket/key"),
        ("s3://other-bucket/models/model.tar.gz", "is outside s3://my-bucket/active-learning/"),
        ("s3://my-bucket/models/initial/model.tar.gz", "is outside s3://my-bucket/active-learning/"),
    ],
)
def test_bad_initial_model_data_url_fails_once_before_creating(
    context: dict[str, Any], url: str, problem: str
) -> None:
    op = _operator(settings={"initial_model_data_url": url})
    spies = _spy(op.hook, *CREATES)

    with pytest.raises(AirflowFailException, match=rf"setting initial_model_data_url.*{problem}"):
        op.execute(context)
    assert all(spy.call_count == 0 for spy in spies.values())


def test_an_initial_model_allowed_outside_the_prefix_is_deployed(context: dict[str, Any]) -> None:
    shared = "s3://shared-models/object-detection/model.tar.gz"
    op = _operator(settings={"initial_model_data_url": shared, "allowed_s3_uris": ["s3://shared-models/"]})

    assert op.execute(context)["model_data_url"] == shared


def test_no_initial_model_and_no_endpoint_fails_once_naming_the_setting(context: dict[str, Any]) -> None:
    op = _operator(settings={"initial_model_data_url": None})
    spies = _spy(op.hook, *CREATES)

    with pytest.raises(AirflowFailException, match=r"setting initial_model_data_url is empty and endpoint"):
        op.execute(context)
    assert all(spy.call_count == 0 for spy in spies.values())


def test_no_initial_model_is_needed_while_the_endpoint_exists(context: dict[str, Any]) -> None:
    _operator().execute(context)

    assert _operator(settings={"initial_model_data_url": ""}).execute(context)["created"] is False


def test_the_initial_model_comes_from_the_settings_only() -> None:
    assert "initial_model_data_url" not in DeployModelOperator.template_fields
    with pytest.raises(TypeError, match="initial_model_data_url"):
        DeployModelOperator(task_id="x", settings=SETTINGS, initial_model_data_url=INITIAL_MODEL)


def test_default_image_is_the_builtin_object_detection_image(context: dict[str, Any]) -> None:
    op = _operator(image_uri=None)

    op.execute(context)

    image = op.hook.conn.describe_model(ModelName=MODEL)["PrimaryContainer"]["Image"]
    assert image.endswith(f".dkr.ecr.{REGION}.amazonaws.com/object-detection:1")
    assert image != IMAGE
