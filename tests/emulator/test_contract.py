"""Contract tests: every response of the embedded local AWS (its own handlers and moto) matches botocore.

A representative session of what the product calls, through real boto3 clients whose every call is
recorded and its parsed response checked against the operation's output shape (required members,
types, min/max, enums, patterns). The DAG's own calls are checked the same way in
tests/integration/test_dag_end_to_end.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.exceptions import ClientError

from emulator.a2i import ReviewerConfig
from emulator.server import Emulator, EmulatorConfig
from tests.aws_contract import CallRecorder, output_errors
from tests.support import wait_for
from world import REFERENCE_METADATA
from world.model import train
from world.scenes import DEMO_CLASSES, make_scenes

pytestmark = pytest.mark.integration

BUCKET = "contract-bucket"
ROLE = "arn:aws:iam::123456789012:role/Contract"
WORKTEAM = "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/contract"
CLASSES = list(DEMO_CLASSES)


@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[CallRecorder, Callable[[str], Any]]]:
    recorder = CallRecorder()
    with Emulator(
        reviewer=ReviewerConfig(delay=0.3, workers=2, seed=3),
        config=EmulatorConfig(activation_delay=0.2, update_delay=0.3, training_start_delay=0.1),
    ) as emulator:
        session = boto3.session.Session(
            aws_access_key_id="contract", aws_secret_access_key="contract", region_name="us-east-1"
        )
        clients: dict[str, Any] = {}

        def client(service: str) -> Any:
            if service not in clients:
                clients[service] = recorder.attach(session.client(service, endpoint_url=emulator.url))
            return clients[service]

        yield recorder, client


def put_model(s3: Any, key: str, seed: int, scenes: int) -> str:
    s3.put_object(
        Bucket=BUCKET, Key=key, Body=train(None, make_scenes(seed, scenes, CLASSES), CLASSES).to_artifact()
    )
    return f"s3://{BUCKET}/{key}"


def deploy(sagemaker: Any, name: str, model_url: str) -> str:
    sagemaker.create_model(
        ModelName=f"{name}-model",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": "local/od:1", "ModelDataUrl": model_url},
        Tags=[{"Key": "model-data", "Value": model_url}],
    )
    sagemaker.describe_model(ModelName=f"{name}-model")
    sagemaker.create_endpoint_config(
        EndpointConfigName=f"{name}-config",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": f"{name}-model",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m4.xlarge",
            }
        ],
    )
    sagemaker.describe_endpoint_config(EndpointConfigName=f"{name}-config")
    return f"{name}-config"


def manifest(s3: Any, key: str, seed: int, count: int) -> str:
    lines = []
    for index, (image, boxes) in enumerate(make_scenes(seed, count, CLASSES)):
        s3.put_object(Bucket=BUCKET, Key=f"train/{seed}-{index}.jpg", Body=image)
        annotations = [{k: b[k] for k in ("class_id", "left", "top", "width", "height")} for b in boxes]
        line = {
            "source-ref": f"s3://{BUCKET}/train/{seed}-{index}.jpg",
            "labels": {"annotations": annotations, "image_size": [{"width": 96, "height": 96, "depth": 3}]},
        }
        lines.append(json.dumps(line))
    s3.put_object(Bucket=BUCKET, Key=key, Body="\n".join(lines).encode())
    return f"s3://{BUCKET}/{key}"


def training_request(name: str, train_uri: str, model_uri: str | None) -> dict[str, Any]:
    def channel(channel_name: str, uri: str) -> dict[str, Any]:
        return {
            "ChannelName": channel_name,
            "ContentType": "application/x-recordio",
            "RecordWrapperType": "RecordIO",
            "InputMode": "Pipe",
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "AugmentedManifestFile",
                    "S3Uri": uri,
                    "AttributeNames": ["source-ref", "labels"],
                }
            },
        }

    channels = [channel("train", train_uri), channel("validation", train_uri)]
    if model_uri:
        channels.append(
            {
                "ChannelName": "model",
                "ContentType": "application/x-sagemaker-model",
                "InputMode": "File",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": model_uri}},
            }
        )
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": "local/od:1", "TrainingInputMode": "Pipe"},
        "RoleArn": ROLE,
        "HyperParameters": {"num_classes": "4", "epochs": "1"},
        "InputDataConfig": channels,
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/training/"},
        "ResourceConfig": {"InstanceType": "ml.p3.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "Tags": [{"Key": "purpose", "Value": "contract"}],
    }


def models_endpoints_and_training(aws: Callable[[str], Any]) -> None:
    s3, sagemaker, runtime = aws("s3"), aws("sagemaker"), aws("sagemaker-runtime")
    weak = deploy(sagemaker, "contract-weak", put_model(s3, "models/weak/model.tar.gz", 1, 4))
    sagemaker.create_endpoint(EndpointName="contract-endpoint", EndpointConfigName=weak)
    sagemaker.get_waiter("endpoint_in_service").wait(
        EndpointName="contract-endpoint", WaiterConfig={"Delay": 0.2}
    )
    sagemaker.list_tags(ResourceArn=sagemaker.describe_model(ModelName="contract-weak-model")["ModelArn"])
    for name in ("list_models", "list_endpoint_configs", "list_endpoints"):
        sagemaker.get_paginator(name).paginate(NameContains="contract").build_full_result()
    image, _ = make_scenes(5, 1, CLASSES)[0]
    runtime.invoke_endpoint(EndpointName="contract-endpoint", Body=image, ContentType="image/jpeg")[
        "Body"
    ].read()

    labels = manifest(s3, "manifests/train.manifest", 2, 6)
    sagemaker.create_training_job(
        **training_request("contract-job", labels, f"s3://{BUCKET}/models/weak/model.tar.gz")
    )
    sagemaker.describe_training_job(TrainingJobName="contract-job")  # InProgress
    sagemaker.get_waiter("training_job_completed_or_stopped").wait(
        TrainingJobName="contract-job", WaiterConfig={"Delay": 0.2}
    )
    sagemaker.describe_training_job(TrainingJobName="contract-job")  # Completed
    sagemaker.create_training_job(**training_request("contract-failing-job", labels, None))
    with pytest.raises(Exception, match="Failed"):
        sagemaker.get_waiter("training_job_completed_or_stopped").wait(
            TrainingJobName="contract-failing-job", WaiterConfig={"Delay": 0.2}
        )
    sagemaker.describe_training_job(TrainingJobName="contract-failing-job")
    sagemaker.get_paginator("list_training_jobs").paginate(NameContains="contract").build_full_result()
    job = sagemaker.describe_training_job(TrainingJobName="contract-job")
    sagemaker.list_tags(ResourceArn=job["TrainingJobArn"])

    strong = deploy(sagemaker, "contract-strong", job["ModelArtifacts"]["S3ModelArtifacts"])
    sagemaker.update_endpoint(EndpointName="contract-endpoint", EndpointConfigName=strong)
    sagemaker.describe_endpoint(EndpointName="contract-endpoint")  # Updating
    sagemaker.get_waiter("endpoint_in_service").wait(
        EndpointName="contract-endpoint", WaiterConfig={"Delay": 0.2}
    )
    s3.put_object(Bucket=BUCKET, Key="models/broken/model.tar.gz", Body=b"not a tarball")
    broken = deploy(sagemaker, "contract-broken", f"s3://{BUCKET}/models/broken/model.tar.gz")
    sagemaker.update_endpoint(EndpointName="contract-endpoint", EndpointConfigName=broken)
    wait_for(
        lambda: "FailureReason" in sagemaker.describe_endpoint(EndpointName="contract-endpoint"), timeout=30
    )
    sagemaker.get_waiter("endpoint_in_service").wait(
        EndpointName="contract-endpoint", WaiterConfig={"Delay": 0.2}
    )
    sagemaker.describe_endpoint_config(EndpointConfigName=strong)


def human_review(aws: Callable[[str], Any]) -> None:
    s3, sagemaker, a2i = aws("s3"), aws("sagemaker"), aws("sagemaker-a2i-runtime")
    ui_arn = sagemaker.create_human_task_ui(
        HumanTaskUiName="contract-ui",
        UiTemplate={"Content": "<crowd-form></crowd-form>"},
        Tags=[{"Key": "purpose", "Value": "contract"}],
    )["HumanTaskUiArn"]
    sagemaker.describe_human_task_ui(HumanTaskUiName="contract-ui")
    flow_arn = sagemaker.create_flow_definition(
        FlowDefinitionName="contract-fd",
        HumanLoopConfig={
            "WorkteamArn": WORKTEAM,
            "HumanTaskUiArn": ui_arn,
            "TaskTitle": "Review",
            "TaskDescription": "Fix the boxes",
            "TaskCount": 2,
            "TaskTimeLimitInSeconds": 300,
            "TaskAvailabilityLifetimeInSeconds": 3600,
        },
        OutputConfig={"S3OutputPath": f"s3://{BUCKET}/a2i-output"},
        RoleArn=ROLE,
        Tags=[{"Key": "purpose", "Value": "contract"}],
    )["FlowDefinitionArn"]
    sagemaker.describe_flow_definition(FlowDefinitionName="contract-fd")  # Initializing
    wait_for(
        lambda: (
            sagemaker.describe_flow_definition(FlowDefinitionName="contract-fd")["FlowDefinitionStatus"]
            == "Active"
        ),
        timeout=30,
    )
    sagemaker.add_tags(ResourceArn=flow_arn, Tags=[{"Key": "day", "Value": "2026-11-23"}])
    sagemaker.list_tags(ResourceArn=flow_arn)

    names = []
    for index, (image, boxes) in enumerate(make_scenes(7, 3, CLASSES)):
        reference = [{k: b[k] for k in ("label", "left", "top", "width", "height")} for b in boxes]
        key = f"incoming/scene-{index}.jpg"
        s3.put_object(
            Bucket=BUCKET, Key=key, Body=image, Metadata={REFERENCE_METADATA: json.dumps(reference)}
        )
        s3.head_object(Bucket=BUCKET, Key=key)
        name = f"contract-loop-{index}"
        task = {"taskObject": f"s3://{BUCKET}/{key}", "labels": CLASSES}
        a2i.start_human_loop(
            HumanLoopName=name, FlowDefinitionArn=flow_arn, HumanLoopInput={"InputContent": json.dumps(task)}
        )
        names.append(name)
    a2i.describe_human_loop(HumanLoopName=names[0])  # InProgress
    a2i.stop_human_loop(HumanLoopName=names[2])
    a2i.describe_human_loop(HumanLoopName=names[2])  # Stopping
    wait_for(
        lambda: a2i.describe_human_loop(HumanLoopName=names[0])["HumanLoopStatus"] == "Completed", timeout=30
    )
    wait_for(
        lambda: a2i.describe_human_loop(HumanLoopName=names[2])["HumanLoopStatus"] == "Stopped", timeout=30
    )
    a2i.get_paginator("list_human_loops").paginate(
        FlowDefinitionArn=flow_arn,
        CreationTimeAfter=datetime.now(UTC) - timedelta(hours=1),
        SortOrder="Ascending",
        PaginationConfig={"PageSize": 2},
    ).build_full_result()
    output = a2i.describe_human_loop(HumanLoopName=names[0])["HumanLoopOutput"]["OutputS3Uri"]
    s3.get_object(Bucket=BUCKET, Key=output.removeprefix(f"s3://{BUCKET}/"))["Body"].read()
    s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="a2i-output/").build_full_result()
    a2i.delete_human_loop(HumanLoopName=names[2])


@pytest.fixture(scope="module")
def session_calls(recorded: tuple[CallRecorder, Callable[[str], Any]]) -> list[dict[str, Any]]:
    recorder, aws = recorded
    aws("s3").create_bucket(Bucket=BUCKET)
    models_endpoints_and_training(aws)
    human_review(aws)
    for missing in (
        lambda: aws("sagemaker").describe_endpoint(EndpointName="contract-missing"),
        lambda: aws("sagemaker-a2i-runtime").describe_human_loop(HumanLoopName="contract-missing"),
    ):
        with pytest.raises(ClientError):
            missing()
    return recorder.calls


def test_the_session_covers_what_the_product_calls(session_calls: list[dict[str, Any]]) -> None:
    called = {(call["service"], call["operation"]) for call in session_calls}
    expected = {
        ("s3", "PutObject"),
        ("s3", "HeadObject"),
        ("s3", "GetObject"),
        ("s3", "ListObjectsV2"),
        ("sagemaker", "CreateModel"),
        ("sagemaker", "DescribeModel"),
        ("sagemaker", "ListModels"),
        ("sagemaker", "CreateEndpointConfig"),
        ("sagemaker", "DescribeEndpointConfig"),
        ("sagemaker", "ListEndpointConfigs"),
        ("sagemaker", "CreateEndpoint"),
        ("sagemaker", "DescribeEndpoint"),
        ("sagemaker", "UpdateEndpoint"),
        ("sagemaker", "CreateTrainingJob"),
        ("sagemaker", "DescribeTrainingJob"),
        ("sagemaker", "ListTrainingJobs"),
        ("sagemaker", "CreateHumanTaskUi"),
        ("sagemaker", "DescribeHumanTaskUi"),
        ("sagemaker", "CreateFlowDefinition"),
        ("sagemaker", "DescribeFlowDefinition"),
        ("sagemaker", "AddTags"),
        ("sagemaker", "ListTags"),
        ("sagemaker-runtime", "InvokeEndpoint"),
        ("sagemaker-a2i-runtime", "StartHumanLoop"),
        ("sagemaker-a2i-runtime", "DescribeHumanLoop"),
        ("sagemaker-a2i-runtime", "ListHumanLoops"),
        ("sagemaker-a2i-runtime", "StopHumanLoop"),
        ("sagemaker-a2i-runtime", "DeleteHumanLoop"),
    }
    assert expected <= called, sorted(expected - called)
    assert all(call["access_key"] == "contract" for call in session_calls)


def test_every_response_matches_botocore_output_shapes(session_calls: list[dict[str, Any]]) -> None:
    broken = sorted(
        {
            f"{call['service']}:{call['operation']} {error}"
            for call in session_calls
            for error in call["contract_errors"]
        }
    )
    assert not broken, "\n".join(broken)


# The validator itself: it finds what the emulator used to answer --------------------------------------
@pytest.fixture(scope="module")
def sagemaker_model() -> Any:
    return botocore.session.get_session().get_service_model("sagemaker")


def describe_endpoint(**extra: Any) -> dict[str, Any]:
    return {
        "EndpointName": "e",
        "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/e",
        "EndpointStatus": "InService",
        "CreationTime": datetime.now(UTC),
        "LastModifiedTime": datetime.now(UTC),
        "ResponseMetadata": {"HTTPStatusCode": 200},
        **extra,
    }


def test_a_valid_response_has_no_errors(sagemaker_model: Any) -> None:
    assert output_errors(describe_endpoint(), sagemaker_model.operation_model("DescribeEndpoint")) == []


@pytest.mark.parametrize(
    ("operation", "response", "expected"),
    [
        ("DescribeEndpoint", describe_endpoint(DataCaptureConfig={}), 'DataCaptureConfig: "EnableCapture"'),
        ("DescribeEndpoint", describe_endpoint(EndpointStatus="Sleeping"), "'Sleeping' is not one of"),
        ("DescribeEndpoint", describe_endpoint(EndpointName="x" * 64), "above the maximum 63"),
        ("DescribeEndpoint", describe_endpoint(EndpointArn="endpoint/e"), "does not match"),
        ("DescribeEndpoint", describe_endpoint(CreationTime=[]), "Invalid type for member CreationTime"),
        ("DescribeEndpoint", {"EndpointName": "e"}, 'Missing required member in output: "EndpointArn"'),
        (
            "DescribeModel",
            {
                "ModelName": "m",
                "ModelArn": "arn:aws:sagemaker:us-east-1:123456789012:model/m",
                "CreationTime": datetime.now(UTC),
                "VpcConfig": {},
            },
            'VpcConfig: "SecurityGroupIds"',
        ),
        ("ListModels", {"Models": [], "NextToken": "x" * 8193}, "above the maximum 8192"),
    ],
)
def test_the_validator_finds_what_breaks_the_output_shape(
    sagemaker_model: Any, operation: str, response: dict[str, Any], expected: str
) -> None:
    errors = output_errors(response, sagemaker_model.operation_model(operation))
    assert any(expected in error for error in errors), errors


def test_training_time_below_the_minimum_is_an_error(sagemaker_model: Any) -> None:
    errors = output_errors(
        {"TrainingJobName": "j", "TrainingTimeInSeconds": 0},
        sagemaker_model.operation_model("DescribeTrainingJob"),
    )
    assert any("TrainingTimeInSeconds" in error and "min value: 1" in error for error in errors), errors
