"""InvokeEndpoint, UpdateEndpoint and training jobs on the emulator, through real boto3 clients."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import BUCKET, ROLE
from tests.support import wait_for
from world.model import LocalDetector, train
from world.scenes import DEMO_CLASSES, make_scenes

CLASSES = list(DEMO_CLASSES)


def put_model(aws, key: str, model: LocalDetector) -> str:
    aws("s3").put_object(Bucket=BUCKET, Key=key, Body=model.to_artifact())
    return f"s3://{BUCKET}/{key}"


def deploy(aws, name: str, model_url: str) -> str:
    sagemaker = aws("sagemaker")
    sagemaker.create_model(
        ModelName=f"{name}-model",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": "local/od:1", "ModelDataUrl": model_url},
    )
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
    return f"{name}-config"


@pytest.fixture(scope="module")
def weak_model_url(aws) -> str:
    return put_model(aws, "models/weak/model.tar.gz", train(None, make_scenes(1, 4, CLASSES), CLASSES))


@pytest.fixture(scope="module")
def endpoint(aws, weak_model_url) -> str:
    config = deploy(aws, "it-weak", weak_model_url)
    aws("sagemaker").create_endpoint(EndpointName="it-endpoint", EndpointConfigName=config)
    return "it-endpoint"


def test_invoke_endpoint_answers_in_the_built_in_format(aws, endpoint) -> None:
    image, _ = make_scenes(5, 1, CLASSES)[0]
    response = aws("sagemaker-runtime").invoke_endpoint(
        EndpointName=endpoint, Body=image, ContentType="image/jpeg"
    )
    prediction = json.loads(response["Body"].read())["prediction"]
    assert prediction
    for class_id, score, *corners in prediction:
        assert float(class_id).is_integer()
        assert 0 <= class_id < len(CLASSES)
        assert 0.0 <= score <= 1.0
        assert all(0.0 <= value <= 1.0 for value in corners)


def test_invoke_errors(aws, endpoint) -> None:
    runtime = aws("sagemaker-runtime")
    with pytest.raises(runtime.exceptions.ModelError):
        runtime.invoke_endpoint(EndpointName=endpoint, Body=b"not an image", ContentType="image/jpeg")
    with pytest.raises(ClientError) as missing:
        runtime.invoke_endpoint(EndpointName="no-endpoint", Body=b"x", ContentType="image/jpeg")
    assert missing.value.response["Error"]["Code"] == "ValidationError"


def test_update_endpoint_serves_the_new_config_only_once_in_service(aws, endpoint) -> None:
    sagemaker = aws("sagemaker")
    strong = train(None, make_scenes(2, 100, CLASSES), CLASSES)
    config = deploy(aws, "it-strong", put_model(aws, "models/strong/model.tar.gz", strong))
    sagemaker.update_endpoint(
        EndpointName=endpoint,
        EndpointConfigName=config,
        DeploymentConfig={
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
            }
        },
    )
    during = sagemaker.describe_endpoint(EndpointName=endpoint)
    assert during["EndpointStatus"] == "Updating"
    assert during["EndpointConfigName"] == "it-weak-config"
    with pytest.raises(ClientError) as busy:
        sagemaker.update_endpoint(EndpointName=endpoint, EndpointConfigName=config)
    assert busy.value.response["Error"]["Code"] == "ValidationException"
    sagemaker.get_waiter("endpoint_in_service").wait(EndpointName=endpoint, WaiterConfig={"Delay": 0.2})
    assert sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"] == config


def test_update_with_a_broken_model_rolls_back(aws) -> None:
    sagemaker = aws("sagemaker")
    good = deploy(
        aws,
        "it-rb-good",
        put_model(aws, "models/rb/model.tar.gz", train(None, make_scenes(3, 4, CLASSES), CLASSES)),
    )
    sagemaker.create_endpoint(EndpointName="it-rollback", EndpointConfigName=good)
    aws("s3").put_object(Bucket=BUCKET, Key="models/broken/model.tar.gz", Body=b"not a tarball")
    broken = deploy(aws, "it-rb-broken", f"s3://{BUCKET}/models/broken/model.tar.gz")
    sagemaker.update_endpoint(EndpointName="it-rollback", EndpointConfigName=broken)
    wait_for(lambda: sagemaker.describe_endpoint(EndpointName="it-rollback")["EndpointStatus"] == "InService")
    described = sagemaker.describe_endpoint(EndpointName="it-rollback")
    assert described["EndpointConfigName"] == good
    assert "rolled back" in described["FailureReason"]


def manifest(aws, key: str, seed: int, count: int) -> str:
    s3, lines = aws("s3"), []
    for index, (image, boxes) in enumerate(make_scenes(seed, count, CLASSES)):
        s3.put_object(Bucket=BUCKET, Key=f"train-images/{seed}-{index}.jpg", Body=image)
        lines.append(
            json.dumps(
                {
                    "source-ref": f"s3://{BUCKET}/train-images/{seed}-{index}.jpg",
                    "labels": {
                        "annotations": [
                            {k: b[k] for k in ("class_id", "left", "top", "width", "height")} for b in boxes
                        ],
                        "image_size": [{"width": 96, "height": 96, "depth": 3}],
                    },
                }
            )
        )
    s3.put_object(Bucket=BUCKET, Key=key, Body="\n".join(lines).encode())
    return f"s3://{BUCKET}/{key}"


def channel(name: str, uri: str) -> dict:
    return {
        "ChannelName": name,
        "ContentType": "application/x-recordio",
        "RecordWrapperType": "RecordIO",
        "InputMode": "Pipe",
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "AugmentedManifestFile",
                "S3Uri": uri,
                "S3DataDistributionType": "FullyReplicated",
                "AttributeNames": ["source-ref", "labels"],
            }
        },
    }


def training_request(name: str, train_uri: str, validation_uri: str, model_uri: str) -> dict:
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": "local/od:1", "TrainingInputMode": "Pipe"},
        "RoleArn": ROLE,
        "HyperParameters": {"num_classes": "4", "epochs": "1"},
        "InputDataConfig": [
            channel("train", train_uri),
            channel("validation", validation_uri),
            {
                "ChannelName": "model",
                "ContentType": "application/x-sagemaker-model",
                "InputMode": "File",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": model_uri,
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            },
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/training/"},
        "ResourceConfig": {"InstanceType": "ml.p3.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "Tags": [{"Key": "purpose", "Value": "integration"}],
    }


def test_training_really_trains_and_reports_validation_map(aws, weak_model_url) -> None:
    sagemaker = aws("sagemaker")
    train_uri = manifest(aws, "manifests/train.manifest", 2, 120)
    validation_uri = manifest(aws, "manifests/validation.manifest", 999, 40)
    job = sagemaker.create_training_job(
        **training_request("it-job", train_uri, validation_uri, weak_model_url)
    )
    assert sagemaker.describe_training_job(TrainingJobName="it-job")["TrainingJobStatus"] == "InProgress"
    sagemaker.get_waiter("training_job_completed_or_stopped").wait(
        TrainingJobName="it-job", WaiterConfig={"Delay": 0.2}
    )
    described = sagemaker.describe_training_job(TrainingJobName="it-job")
    assert described["TrainingJobStatus"] == "Completed"
    artifact = described["ModelArtifacts"]["S3ModelArtifacts"]
    assert artifact == f"s3://{BUCKET}/training/it-job/output/model.tar.gz"
    trained = LocalDetector.from_artifact(
        aws("s3").get_object(Bucket=BUCKET, Key=artifact.split("/", 3)[3])["Body"].read()
    )
    assert trained.classes == CLASSES
    metric = {m["MetricName"]: m["Value"] for m in described["FinalMetricDataList"]}
    assert 0.8 < metric["validation:mAP"] <= 1.0
    assert aws("sagemaker").list_tags(ResourceArn=job["TrainingJobArn"])["Tags"] == [
        {"Key": "purpose", "Value": "integration"}
    ]
    listed = sagemaker.list_training_jobs(NameContains="it-job")["TrainingJobSummaries"]
    assert [summary["TrainingJobName"] for summary in listed] == ["it-job"]
    with pytest.raises(ClientError) as again:
        sagemaker.create_training_job(**training_request("it-job", train_uri, validation_uri, weak_model_url))
    assert again.value.response["Error"]["Code"] == "ResourceInUse"


def test_training_with_empty_annotations_fails_like_the_algorithm(aws, weak_model_url) -> None:
    sagemaker = aws("sagemaker")
    aws("s3").put_object(
        Bucket=BUCKET,
        Key="manifests/empty.manifest",
        Body=json.dumps(
            {"source-ref": f"s3://{BUCKET}/train-images/2-0.jpg", "labels": {"annotations": []}}
        ).encode(),
    )
    empty = f"s3://{BUCKET}/manifests/empty.manifest"
    sagemaker.create_training_job(**training_request("it-job-empty", empty, empty, weak_model_url))
    wait_for(
        lambda: (
            sagemaker.describe_training_job(TrainingJobName="it-job-empty")["TrainingJobStatus"] == "Failed"
        )
    )
    assert (
        "empty annotations"
        in sagemaker.describe_training_job(TrainingJobName="it-job-empty")["FailureReason"]
    )


def test_stop_training_job(emulator, aws, weak_model_url) -> None:
    sagemaker = aws("sagemaker")
    train_uri = manifest(aws, "manifests/stop-train.manifest", 4, 20)
    original = emulator.config
    emulator.config = replace(original, training_start_delay=2.0)  # time to stop it before it trains
    try:
        sagemaker.create_training_job(**training_request("it-job-stop", train_uri, train_uri, weak_model_url))
        sagemaker.stop_training_job(TrainingJobName="it-job-stop")
    finally:
        emulator.config = original
    assert sagemaker.describe_training_job(TrainingJobName="it-job-stop")["TrainingJobStatus"] == "Stopping"
    wait_for(
        lambda: (
            sagemaker.describe_training_job(TrainingJobName="it-job-stop")["TrainingJobStatus"] == "Stopped"
        )
    )
    with pytest.raises(ClientError) as again:
        sagemaker.stop_training_job(TrainingJobName="it-job-stop")
    assert again.value.response["Error"]["Code"] == "ValidationException"
