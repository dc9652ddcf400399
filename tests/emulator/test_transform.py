"""Batch Transform jobs on the emulator, through real boto3 clients: workers, .out files, failures."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import WaiterError

from emulator.server import Emulator, EmulatorConfig
from tests.aws_contract import output_errors
from world.model import train
from world.scenes import DEMO_CLASSES, make_scenes

BUCKET = "transform-bucket"
ROLE = "arn:aws:iam::123456789012:role/Transform"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(config=EmulatorConfig(invoke_latency=0.01)) as running:
        s3 = running.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        model = train(None, make_scenes(2, 30, list(DEMO_CLASSES)), list(DEMO_CLASSES))
        s3.put_object(Bucket=BUCKET, Key="models/model.tar.gz", Body=model.to_artifact())
        running.client("sagemaker").create_model(
            ModelName="transform-model",
            ExecutionRoleArn=ROLE,
            PrimaryContainer={"Image": "local", "ModelDataUrl": f"s3://{BUCKET}/models/model.tar.gz"},
        )
        for index, (image, _) in enumerate(make_scenes(5, 12, list(DEMO_CLASSES))):
            s3.put_object(Bucket=BUCKET, Key=f"in/day/{index:03d}.jpg", Body=image)
        yield running


def request(name: str, source: dict[str, str], output: str) -> dict[str, Any]:
    return {
        "TransformJobName": name,
        "ModelName": "transform-model",
        "MaxConcurrentTransforms": 4,
        "MaxPayloadInMB": 6,
        "BatchStrategy": "SingleRecord",
        "TransformInput": {"DataSource": {"S3DataSource": source}, "ContentType": "application/x-image"},
        "TransformOutput": {"S3OutputPath": output},
        "TransformResources": {"InstanceType": "ml.m4.xlarge", "InstanceCount": 2},
    }


def run(emulator: Emulator, name: str, source: dict[str, str], output: str) -> dict[str, Any]:
    sagemaker = emulator.client("sagemaker")
    sagemaker.create_transform_job(**request(name, source, output))
    with contextlib.suppress(WaiterError):  # the waiter gives up on Failed: the test reads why
        sagemaker.get_waiter("transform_job_completed_or_stopped").wait(
            TransformJobName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 300}
        )
    return sagemaker.describe_transform_job(TransformJobName=name)


def outputs(emulator: Emulator, prefix: str) -> dict[str, Any]:
    s3 = emulator.client("s3")
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {
        item["Key"].removeprefix(prefix): json.loads(
            s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
        )
        for item in listed
    }


@pytest.fixture(scope="module")
def prefix_job(emulator: Emulator) -> dict[str, Any]:
    return run(
        emulator,
        "prefix-job",
        {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/in/day/"},
        f"s3://{BUCKET}/out/a/",
    )


@pytest.fixture(scope="module")
def bad_job(emulator: Emulator) -> dict[str, Any]:
    emulator.client("s3").put_object(
        Bucket=BUCKET, Key="in/bad/000.jpg", Body=next(iter(make_scenes(6, 1, list(DEMO_CLASSES))))[0]
    )
    emulator.client("s3").put_object(Bucket=BUCKET, Key="in/bad/notes.txt", Body=b"not an image")
    return run(
        emulator,
        "bad-job",
        {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/in/bad/"},
        f"s3://{BUCKET}/out/b/",
    )


def test_every_object_of_the_prefix_gets_its_prediction_in_a_dot_out_file(
    emulator: Emulator, prefix_job: dict[str, Any]
) -> None:
    assert prefix_job["TransformJobStatus"] == "Completed"
    assert prefix_job["TransformEndTime"] >= prefix_job["TransformStartTime"]
    results = outputs(emulator, "out/a/")
    assert sorted(results) == [f"{index:03d}.jpg.out" for index in range(12)]
    assert all(isinstance(result["prediction"], list) for result in results.values())


def test_a_record_the_model_rejects_fails_the_job_after_the_others_are_written(
    emulator: Emulator, bad_job: dict[str, Any]
) -> None:
    assert bad_job["TransformJobStatus"] == "Failed"
    assert bad_job["FailureReason"] == "ClientError: See job logs for more information"
    assert sorted(outputs(emulator, "out/b/")) == ["000.jpg.out"]


def test_a_manifest_file_limits_the_records_to_the_keys_it_lists(emulator: Emulator) -> None:
    manifest = [{"prefix": f"s3://{BUCKET}/in/day/"}, "001.jpg", "004.jpg"]
    emulator.client("s3").put_object(Bucket=BUCKET, Key="in/manifest.json", Body=json.dumps(manifest))

    job = run(
        emulator,
        "manifest-job",
        {"S3DataType": "ManifestFile", "S3Uri": f"s3://{BUCKET}/in/manifest.json"},
        f"s3://{BUCKET}/out/c/",
    )

    assert job["TransformJobStatus"] == "Completed"
    assert sorted(outputs(emulator, "out/c/")) == ["001.jpg.out", "004.jpg.out"]


@pytest.mark.usefixtures("prefix_job")
def test_a_name_is_used_once_and_an_unknown_model_is_refused(emulator: Emulator) -> None:
    sagemaker = emulator.client("sagemaker")
    source = {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/in/day/"}
    with pytest.raises(sagemaker.exceptions.ClientError, match="already exists"):
        sagemaker.create_transform_job(**request("prefix-job", source, f"s3://{BUCKET}/out/x/"))
    with pytest.raises(sagemaker.exceptions.ClientError, match="Could not find model"):
        sagemaker.create_transform_job(
            **request("other-job", source, f"s3://{BUCKET}/out/y/") | {"ModelName": "missing"}
        )


@pytest.mark.usefixtures("prefix_job", "bad_job")
def test_describe_transform_job_answers_validate_against_botocores_output_shape(emulator: Emulator) -> None:
    sagemaker = emulator.client("sagemaker")
    operation = sagemaker.meta.service_model.operation_model("DescribeTransformJob")
    for name in ("prefix-job", "bad-job"):
        response = sagemaker.describe_transform_job(TransformJobName=name)
        assert output_errors(response, operation) == [], name
