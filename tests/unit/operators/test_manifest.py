"""AugmentedManifestOperator: A2I outputs in moto S3 in A2I's layout, DescribeHumanLoop stubbed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowException
from botocore.stub import Stubber

from active_learning.classes import class_map
from active_learning.naming import human_loop_name
from active_learning.operators.manifest import AugmentedManifestOperator
from tests.support import load_fixture
from tests.unit.operators.conftest import (
    ACCOUNT,
    DAY,
    FLOW_ARN,
    FLOW_DEFINITION_NAME,
    PREFIX,
    REGION,
    RUNS,
    exists,
    operator_kwargs,
    put,
    put_lines,
    read_lines,
    read_text,
    source,
)

HUMAN_LOOPS = f"{RUNS}human-loops.jsonl"
MANIFEST = f"{RUNS}augmented.manifest"
REPORT = f"{RUNS}manifest-report.jsonl"
CREATED = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def loop_name(image: str) -> str:
    return human_loop_name("active-learning", DAY, source(image))


def output_key(loop: str) -> str:
    """Where A2I writes a loop's answer: S3OutputPath/<flow definition>/YYYY/MM/DD/hh/mm/ss/<loop>/."""
    return f"{PREFIX}/a2i-output/{FLOW_DEFINITION_NAME}/2026/11/27/10/00/00/{loop}/output.json"


def a2i_output(image: str, *answers: list[dict[str, Any]], width: int = 640, height: int = 480) -> dict:
    """An A2I output document for a crowd-bounding-box task, one answer per worker."""
    return {
        "flowDefinitionArn": FLOW_ARN,
        "humanLoopName": loop_name(image),
        "inputContent": {"taskObject": source(image), "labels": ["cat", "dog"], "initialValue": []},
        "humanAnswers": [
            {
                "answerContent": {
                    "annotatedResult": {
                        "boundingBoxes": boxes,
                        "inputImageProperties": {"width": width, "height": height},
                    }
                },
                "submissionTime": f"2026-11-27T09:5{worker}:00.000Z",
                "workerId": f"worker-{worker}",
                "workerMetadata": {
                    "identityData": {"identityProviderType": "Cognito", "sub": f"sub-{worker}"}
                },
            }
            for worker, boxes in enumerate(answers)
        ],
    }


def described(loop: str, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "CreationTime": CREATED,
        "HumanLoopStatus": status,
        "HumanLoopName": loop,
        "HumanLoopArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:human-loop/{loop}",
        "FlowDefinitionArn": FLOW_ARN,
        **extra,
    }


def completed(loop: str) -> dict[str, Any]:
    return described(loop, "Completed", HumanLoopOutput={"OutputS3Uri": f"s3://my-bucket/{output_key(loop)}"})


def loop_line(image: str) -> dict[str, Any]:
    name = loop_name(image)
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:human-loop/{name}"
    return {"name": name, "source": source(image), "reason": "low-confidence", "arn": arn, "started": True}


@pytest.fixture
def op() -> AugmentedManifestOperator:
    return AugmentedManifestOperator(task_id="augmented_manifest", concurrency=1, **operator_kwargs())


@pytest.fixture
def a2i(s3: Any, op: AugmentedManifestOperator) -> Iterator[Stubber]:
    with Stubber(op.hook.conn) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def test_converts_completed_loops_and_reports_every_loop(
    s3: Any, a2i: Stubber, op: AugmentedManifestOperator, context: dict[str, Any]
) -> None:
    images = ["seed.jpg", "failed.jpg", "unicorn.jpg", "two-workers.jpg", "nothing.jpg", "gone.jpg"]
    put_lines(s3, HUMAN_LOOPS, [loop_line(image) for image in images])
    seed, failed, unicorn, two, nothing, gone = (loop_name(image) for image in images)
    # 1. the seed's own A2I output, stored where A2I would have put it
    put(s3, output_key(seed), json.dumps(load_fixture("seed_a2i_output.json")))
    a2i.add_response("describe_human_loop", completed(seed), {"HumanLoopName": seed})
    # 2. no worker took the task in time
    a2i.add_response(
        "describe_human_loop",
        described(failed, "Failed", FailureReason="The human loop expired before a worker completed it"),
        {"HumanLoopName": failed},
    )
    # 3. a label outside the class list
    unknown = [{"label": "unicorn", "left": 1, "top": 2, "width": 30, "height": 40}]
    put(s3, output_key(unicorn), json.dumps(a2i_output("unicorn.jpg", unknown)))
    a2i.add_response("describe_human_loop", completed(unicorn), {"HumanLoopName": unicorn})
    # 4. two workers who agree on the cat (their boxes are averaged); one also drew a dog alone
    first = [{"label": "cat", "left": 64, "top": 120, "width": 288, "height": 240}]
    second = [
        {"label": "cat", "left": 66, "top": 118, "width": 290, "height": 244},
        {"label": "dog", "left": 400, "top": 300, "width": 100, "height": 100},
    ]
    put(s3, output_key(two), json.dumps(a2i_output("two-workers.jpg", first, second)))
    a2i.add_response("describe_human_loop", completed(two), {"HumanLoopName": two})
    # 5. the worker removed every box: nothing to train on
    put(s3, output_key(nothing), json.dumps(a2i_output("nothing.jpg", [])))
    a2i.add_response("describe_human_loop", completed(nothing), {"HumanLoopName": nothing})
    # 6. the loop was deleted since
    a2i.add_client_error(
        "describe_human_loop",
        service_error_code="ResourceNotFoundException",
        service_message=f"HumanLoop {gone} does not exist",
        http_status_code=404,
        expected_params={"HumanLoopName": gone},
    )

    result = op.execute(context)

    assert result == {
        "converted": 2,
        "skipped": 2,
        "errored": 2,
        "manifest_uri": f"s3://my-bucket/{MANIFEST}",
        "report_uri": f"s3://my-bucket/{REPORT}",
    }
    manifest = read_lines(s3, MANIFEST)
    assert manifest[0] == load_fixture("seed_manifest_line.json")  # the seed's own conversion
    assert manifest[1] == {
        "source-ref": source("two-workers.jpg"),
        "a2i-retraining": {
            "annotations": [{"class_id": 7, "left": 65, "top": 119, "width": 289, "height": 242}],
            "image_size": [{"width": 640, "height": 480, "depth": 3}],
        },
        "a2i-retraining-metadata": {
            "job-name": f"a2i/{two}",
            "class-map": class_map(op.loop_settings.class_names),
            "human-annotated": "yes",
            "objects": [{"confidence": 1}],
            "creation-date": "2026-11-27T09:51:00.000Z",
            "type": "groundtruth/object-detection",
        },
    }
    assert len(manifest) == 2

    report = {line["name"]: line for line in read_lines(s3, REPORT)}
    assert len(report) == len(images)
    assert report[seed] == {"name": seed, "source": source("seed.jpg"), "outcome": "converted"}
    assert report[two]["outcome"] == "converted"
    assert report[failed] == {
        "name": failed,
        "source": source("failed.jpg"),
        "outcome": "skipped",
        "reason": "loop is Failed: The human loop expired before a worker completed it",
    }
    assert report[nothing]["outcome"] == "skipped"
    assert report[nothing]["reason"] == "no box left to train on"
    assert report[unicorn]["outcome"] == "error"
    assert report[unicorn]["reason"].startswith("conversion: ")
    assert "'unicorn' is not in the class list" in report[unicorn]["reason"]
    assert report[gone]["outcome"] == "error"
    assert "does not exist" in report[gone]["reason"]


def test_a_rerun_rewrites_the_day_files(
    s3: Any, a2i: Stubber, op: AugmentedManifestOperator, context: dict[str, Any]
) -> None:
    name = loop_name("cat.jpg")
    put_lines(s3, HUMAN_LOOPS, [loop_line("cat.jpg")])
    answer = [{"label": "dog", "left": 10, "top": 20, "width": 30, "height": 40}]
    put(s3, output_key(name), json.dumps(a2i_output("cat.jpg", answer)))
    for _ in range(2):
        a2i.add_response("describe_human_loop", completed(name), {"HumanLoopName": name})

    first = op.execute(context)
    manifest = read_text(s3, MANIFEST)
    second = op.execute(context)

    assert first == second
    assert first["converted"] == 1
    assert read_text(s3, MANIFEST) == manifest
    assert len(read_lines(s3, MANIFEST)) == 1
    assert len(read_lines(s3, REPORT)) == 1
    assert read_lines(s3, MANIFEST)[0]["a2i-retraining"]["annotations"] == [
        {"class_id": 11, "left": 10, "top": 20, "width": 30, "height": 40}
    ]


def test_no_loops_file_means_empty_outputs(
    s3: Any, a2i: Stubber, op: AugmentedManifestOperator, context: dict[str, Any]
) -> None:
    result = op.execute(context)

    assert (result["converted"], result["skipped"], result["errored"]) == (0, 0, 0)
    assert exists(s3, MANIFEST)
    assert read_text(s3, MANIFEST) == ""
    assert read_text(s3, REPORT) == ""


def test_when_every_loop_errors_the_task_fails_with_the_report(
    s3: Any, a2i: Stubber, op: AugmentedManifestOperator, context: dict[str, Any]
) -> None:
    names = [loop_name(image) for image in ("a.jpg", "b.jpg")]
    put_lines(s3, HUMAN_LOOPS, [loop_line("a.jpg"), loop_line("b.jpg")])
    for name in names:  # e.g. the connection's identity may not call DescribeHumanLoop
        a2i.add_client_error(
            "describe_human_loop",
            service_error_code="AccessDeniedException",
            service_message="not authorized",
            http_status_code=403,
            expected_params={"HumanLoopName": name},
        )

    with pytest.raises(AirflowException, match="No loop output could be read"):
        op.execute(context)

    assert {line["outcome"] for line in read_lines(s3, REPORT)} == {"error"}
