"""batch_predict in batch_transform mode on the local AWS: predictions as in real time, one job a day."""

from __future__ import annotations

import json
from typing import Any
from unittest.mock import MagicMock
from urllib.parse import quote

import pytest

from active_learning.operators.predict import BatchPredictOperator
from emulator.server import Emulator
from tests.integration.conftest import BUCKET, ROLE, WORKTEAM
from tests.integration.test_models_and_endpoints import CLASSES, deploy, put_model
from world.model import train
from world.scenes import make_scenes

PREFIX = "transform-it"
DAYS = {"realtime": "2026-11-20", "batch_transform": "2026-11-21"}
ENDPOINT = "bt-endpoint"


@pytest.fixture(scope="module")
def day_of_images(emulator: Emulator, aws) -> dict[str, str]:
    """The same images, a non-image and an oversize object on two days; an endpoint serving a model."""
    model_url = put_model(aws, "models/bt/model.tar.gz", train(None, make_scenes(3, 20, CLASSES), CLASSES))
    aws("sagemaker").create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=deploy(aws, "bt", model_url))
    scenes = make_scenes(11, 10, CLASSES)
    for day in DAYS.values():
        incoming = f"{PREFIX}/incoming/{day}/"
        for index, (image, _) in enumerate(scenes):
            aws("s3").put_object(Bucket=BUCKET, Key=f"{incoming}scene-{index:02d}.jpg", Body=image)
        aws("s3").put_object(Bucket=BUCKET, Key=f"{incoming}notes.txt", Body=b"not an image")
        aws("s3").put_object(Bucket=BUCKET, Key=f"{incoming}huge.jpg", Body=bytes(7 * 2**20))
    return DAYS


@pytest.fixture
def connection(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_BT",
        f"aws://integration:integration@/?region_name=us-east-1&endpoint_url={quote(emulator.url, safe='')}",
    )
    return "aws_bt"


def predict(connection: str, mode: str) -> dict[str, Any]:
    settings = {
        "bucket": BUCKET,
        "prefix": PREFIX,
        "role_arn": ROLE,
        "workteam_arn": WORKTEAM,
        "endpoint_name": ENDPOINT,
        "class_names": CLASSES,
        "predict_mode": mode,
        "transform_instance_count": 2,
        "threshold": 0.9,  # some images routed to review, some not
    }
    operator = BatchPredictOperator(
        task_id="batch_predict",
        settings=settings,
        day=DAYS[mode],
        aws_conn_id=connection,
        deferrable=False,
        waiter_delay=1,
        waiter_max_attempts=120,
    )
    return operator.execute({"ti": MagicMock()})


def lines(aws, day: str, name: str) -> dict[str, dict[str, Any]]:
    body = aws("s3").get_object(Bucket=BUCKET, Key=f"{PREFIX}/runs/{day}/{name}")["Body"].read().decode()
    return {record["source"].rsplit("/", 1)[-1]: record for record in map(json.loads, body.splitlines())}


def test_a_transform_day_predicts_and_routes_like_real_time(
    emulator: Emulator, aws, day_of_images, connection
) -> None:
    realtime = predict(connection, "realtime")
    transform = predict(connection, "batch_transform")

    assert (transform["images"], transform["predicted"], transform["quarantined"]) == (12, 10, 2)
    assert transform["to_review"] == realtime["to_review"]
    assert 0 < transform["to_review"] < transform["predicted"]  # both kinds of record below
    assert transform["transform_job_status"] == "Failed"  # the non-image fails its record, as in SageMaker
    by_realtime, by_transform = (
        lines(aws, DAYS[m], "predictions.jsonl") for m in ("realtime", "batch_transform")
    )
    assert set(by_transform) == set(by_realtime)
    for image, record in by_transform.items():
        assert (record["detections"], record["review"]) == (
            by_realtime[image]["detections"],
            by_realtime[image]["review"],
        ), image
        # only the images routed to review were read here, for the size the reviewers' boxes need
        if record["review"]:
            assert {k: record[k] for k in ("width", "height", "format")} == {
                k: by_realtime[image][k] for k in ("width", "height", "format")
            }
        else:
            assert "width" not in record
    quarantined = lines(aws, DAYS["batch_transform"], "quarantine.jsonl")
    assert "7340032 bytes" in quarantined["huge.jpg"]["reason"]  # from the listing: never sent
    assert "not a decodable image" in quarantined["notes.txt"]["reason"]
    job = emulator.transforms.jobs[transform["transform_job_name"]]
    assert job.request["TransformResources"]["InstanceCount"] == 2
    assert job.request["TransformInput"]["DataSource"]["S3DataSource"]["S3DataType"] == "ManifestFile"


def test_a_rerun_of_the_day_starts_no_second_transform_job(
    emulator: Emulator, aws, day_of_images, connection
) -> None:
    first = predict(connection, "batch_transform")
    jobs = len(emulator.transforms.jobs)

    again = predict(connection, "batch_transform")

    assert len(emulator.transforms.jobs) == jobs
    assert again == first
