"""Task UIs, flow definitions and the A2I runtime on the emulator, through real boto3 clients."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import BUCKET, ROLE, WORKTEAM
from tests.support import wait_for
from world import REFERENCE_METADATA
from world.scenes import DEMO_CLASSES, make_scenes


def error_code(excinfo: pytest.ExceptionInfo[ClientError]) -> str:
    return excinfo.value.response["Error"]["Code"]


def create_flow_definition(sagemaker, name: str, ui_arn: str, **config: Any) -> str:
    """A flow definition on the emulator with the integration workteam, role and output path."""
    return sagemaker.create_flow_definition(
        FlowDefinitionName=name,
        HumanLoopConfig={
            "WorkteamArn": WORKTEAM,
            "HumanTaskUiArn": ui_arn,
            "TaskTitle": "Review",
            "TaskDescription": "Fix the boxes",
            "TaskCount": 1,
            **config,
        },
        OutputConfig={"S3OutputPath": f"s3://{BUCKET}/a2i-output"},
        RoleArn=ROLE,
    )["FlowDefinitionArn"]


@pytest.fixture(scope="module")
def flow(aws) -> dict[str, str]:
    sagemaker = aws("sagemaker")
    ui = sagemaker.create_human_task_ui(HumanTaskUiName="it-ui", UiTemplate={"Content": "<crowd-form/>"})
    flow_arn = create_flow_definition(sagemaker, "it-fd", ui["HumanTaskUiArn"], TaskCount=2)
    wait_for(
        lambda: (
            sagemaker.describe_flow_definition(FlowDefinitionName="it-fd")["FlowDefinitionStatus"] == "Active"
        )
    )
    return {"arn": flow_arn, "name": "it-fd"}


@pytest.fixture(scope="module")
def image_uri(aws) -> str:
    image, boxes = make_scenes(7, 1, DEMO_CLASSES)[0]
    aws("s3").put_object(
        Bucket=BUCKET,
        Key="incoming/scene.jpg",
        Body=image,
        Metadata={
            REFERENCE_METADATA: json.dumps(
                [{k: b[k] for k in ("label", "left", "top", "width", "height")} for b in boxes]
            )
        },
    )
    return f"s3://{BUCKET}/incoming/scene.jpg"


def test_task_ui_lifecycle_and_errors(aws) -> None:
    sagemaker = aws("sagemaker")
    with pytest.raises(ClientError) as absent:
        sagemaker.describe_human_task_ui(HumanTaskUiName="missing-ui")
    assert error_code(absent) == "ResourceNotFound"
    created = sagemaker.create_human_task_ui(
        HumanTaskUiName="lifecycle-ui", UiTemplate={"Content": "<p>x</p>"}
    )
    described = sagemaker.describe_human_task_ui(HumanTaskUiName="lifecycle-ui")
    assert described["HumanTaskUiArn"] == created["HumanTaskUiArn"]
    assert described["HumanTaskUiStatus"] == "Active"
    with pytest.raises(ClientError) as again:
        sagemaker.create_human_task_ui(HumanTaskUiName="lifecycle-ui", UiTemplate={"Content": "<p>x</p>"})
    assert error_code(again) == "ResourceInUse"
    with pytest.raises(ClientError) as bad_name:
        sagemaker.create_human_task_ui(HumanTaskUiName="Bad_Name", UiTemplate={"Content": "<p>x</p>"})
    assert error_code(bad_name) == "ValidationException"
    with pytest.raises(ClientError) as too_long:
        sagemaker.create_human_task_ui(HumanTaskUiName="big-ui", UiTemplate={"Content": "x" * 128_001})
    assert error_code(too_long) == "ValidationException"


def test_flow_definition_goes_from_initializing_to_active(aws, flow) -> None:
    sagemaker = aws("sagemaker")
    ui = sagemaker.describe_human_task_ui(HumanTaskUiName="it-ui")["HumanTaskUiArn"]
    create_flow_definition(sagemaker, "it-fd-2", ui)
    assert (
        sagemaker.describe_flow_definition(FlowDefinitionName="it-fd-2")["FlowDefinitionStatus"]
        == "Initializing"
    )
    wait_for(
        lambda: (
            sagemaker.describe_flow_definition(FlowDefinitionName="it-fd-2")["FlowDefinitionStatus"]
            == "Active"
        )
    )
    described = sagemaker.describe_flow_definition(FlowDefinitionName="it-fd-2")
    assert described["HumanLoopConfig"]["TaskCount"] == 1
    assert isinstance(described["CreationTime"], datetime)
    with pytest.raises(ClientError) as absent:
        sagemaker.describe_flow_definition(FlowDefinitionName="no-such-fd")
    assert error_code(absent) == "ResourceNotFound"


def test_reference_reviewer_completes_a_loop_with_a2i_output(aws, flow, image_uri) -> None:
    a2i, s3 = aws("sagemaker-a2i-runtime"), aws("s3")
    content = json.dumps({"taskObject": image_uri, "labels": list(DEMO_CLASSES), "initialValue": []})
    started = a2i.start_human_loop(
        HumanLoopName="it-loop-1", FlowDefinitionArn=flow["arn"], HumanLoopInput={"InputContent": content}
    )
    assert started["HumanLoopArn"].endswith(":human-loop/it-loop-1")
    wait_for(lambda: a2i.describe_human_loop(HumanLoopName="it-loop-1")["HumanLoopStatus"] == "Completed")
    described = a2i.describe_human_loop(HumanLoopName="it-loop-1")
    uri = described["HumanLoopOutput"]["OutputS3Uri"]
    assert re.fullmatch(
        rf"s3://{BUCKET}/a2i-output/it-fd/\d{{4}}/\d\d/\d\d/\d\d/\d\d/\d\d/it-loop-1/output\.json", uri
    )
    output = json.loads(s3.get_object(Bucket=BUCKET, Key=uri.split("/", 3)[3])["Body"].read())
    assert output["humanLoopName"] == "it-loop-1"
    assert output["flowDefinitionArn"] == flow["arn"]
    assert output["inputContent"]["taskObject"] == image_uri
    assert len(output["humanAnswers"]) == 2  # the flow definition's TaskCount
    answer = output["humanAnswers"][0]["answerContent"]["annotatedResult"]
    assert answer["inputImageProperties"] == {"width": 96, "height": 96}
    assert answer["boundingBoxes"]
    assert {box["label"] for box in answer["boundingBoxes"]} <= set(DEMO_CLASSES)


def test_start_errors_are_aws_errors(aws, flow) -> None:
    a2i = aws("sagemaker-a2i-runtime")
    a2i.start_human_loop(
        HumanLoopName="it-dup",
        FlowDefinitionArn=flow["arn"],
        HumanLoopInput={"InputContent": json.dumps({"taskObject": "s3://x/y.jpg"})},
    )
    with pytest.raises(a2i.exceptions.ConflictException):
        a2i.start_human_loop(
            HumanLoopName="it-dup", FlowDefinitionArn=flow["arn"], HumanLoopInput={"InputContent": "{}"}
        )
    for name, arn, content in (
        ("Bad_Name", flow["arn"], "{}"),
        ("it-ok", flow["arn"], "not json"),
        ("it-ok", flow["arn"].replace("it-fd", "nope"), "{}"),
    ):
        with pytest.raises(a2i.exceptions.ValidationException):
            a2i.start_human_loop(
                HumanLoopName=name, FlowDefinitionArn=arn, HumanLoopInput={"InputContent": content}
            )
    with pytest.raises(a2i.exceptions.ResourceNotFoundException):
        a2i.describe_human_loop(HumanLoopName="never-started")


def test_list_pages_and_filters(aws, flow) -> None:
    a2i = aws("sagemaker-a2i-runtime")
    before = datetime.now(UTC) - timedelta(seconds=1)
    for index in range(7):
        a2i.start_human_loop(
            HumanLoopName=f"page-{index}",
            FlowDefinitionArn=flow["arn"],
            HumanLoopInput={"InputContent": json.dumps({"taskObject": "s3://x/y.jpg"})},
        )
    pages = list(
        a2i.get_paginator("list_human_loops").paginate(
            FlowDefinitionArn=flow["arn"], CreationTimeAfter=before, PaginationConfig={"PageSize": 3}
        )
    )
    names = [s["HumanLoopName"] for page in pages for s in page["HumanLoopSummaries"]]
    # ascending by creation time; loops of earlier tests may share the query's second
    assert [name for name in names if name.startswith("page-")] == [f"page-{index}" for index in range(7)]
    assert all(len(page["HumanLoopSummaries"]) <= 3 for page in pages)
    assert len(pages) == -(-len(names) // 3)
    later = a2i.list_human_loops(
        FlowDefinitionArn=flow["arn"], CreationTimeAfter=datetime.now(UTC) + timedelta(hours=1)
    )
    assert later["HumanLoopSummaries"] == []
    with pytest.raises(a2i.exceptions.ValidationException):
        a2i.list_human_loops(FlowDefinitionArn=flow["arn"], MaxResults=101)


def test_stop_and_delete(aws, flow) -> None:
    a2i = aws("sagemaker-a2i-runtime")
    a2i.start_human_loop(
        HumanLoopName="it-stop",
        FlowDefinitionArn=flow["arn"],
        HumanLoopInput={"InputContent": json.dumps({"taskObject": "s3://x/y.jpg"})},
    )
    with pytest.raises(a2i.exceptions.ValidationException):
        a2i.delete_human_loop(HumanLoopName="it-stop")
    a2i.stop_human_loop(HumanLoopName="it-stop")
    assert a2i.describe_human_loop(HumanLoopName="it-stop")["HumanLoopStatus"] == "Stopping"
    wait_for(lambda: a2i.describe_human_loop(HumanLoopName="it-stop")["HumanLoopStatus"] == "Stopped")
    a2i.delete_human_loop(HumanLoopName="it-stop")
    with pytest.raises(a2i.exceptions.ResourceNotFoundException):
        a2i.describe_human_loop(HumanLoopName="it-stop")


def test_manual_answer_through_the_admin_route(emulator, aws, flow) -> None:
    import urllib.request

    a2i = aws("sagemaker-a2i-runtime")
    emulator.a2i.reviewer = type(emulator.a2i.reviewer)(mode="manual")
    try:
        a2i.start_human_loop(
            HumanLoopName="it-manual",
            FlowDefinitionArn=flow["arn"],
            HumanLoopInput={"InputContent": json.dumps({"taskObject": "s3://x/y.jpg"})},
        )
        pending = json.loads(urllib.request.urlopen(f"{emulator.url}/_emulator/human-loops").read())[
            "pending"
        ]
        assert "it-manual" in {loop["name"] for loop in pending}
        answer: dict[str, Any] = {
            "humanAnswers": [
                {
                    "answerContent": {
                        "annotatedResult": {
                            "boundingBoxes": [
                                {"label": "car", "left": 1, "top": 2, "width": 30, "height": 40}
                            ],
                            "inputImageProperties": {"width": 96, "height": 96},
                        }
                    },
                    "submissionTime": "2026-11-27T10:00:00.000Z",
                    "workerId": "me",
                }
            ]
        }
        request = urllib.request.Request(
            f"{emulator.url}/_emulator/human-loops/it-manual/answer",
            data=json.dumps(answer).encode(),
            method="POST",
        )
        urllib.request.urlopen(request).read()
        assert a2i.describe_human_loop(HumanLoopName="it-manual")["HumanLoopStatus"] == "Completed"
    finally:
        emulator.a2i.reviewer = type(emulator.a2i.reviewer)(delay=0.3)


def test_delete_flow_definition(aws, flow) -> None:
    sagemaker = aws("sagemaker")
    ui = sagemaker.describe_human_task_ui(HumanTaskUiName="it-ui")["HumanTaskUiArn"]
    create_flow_definition(sagemaker, "it-fd-delete", ui)
    sagemaker.delete_flow_definition(FlowDefinitionName="it-fd-delete")
    with pytest.raises(ClientError) as gone:
        sagemaker.describe_flow_definition(FlowDefinitionName="it-fd-delete")
    assert error_code(gone) == "ResourceNotFound"


def test_a_repeated_start_with_the_same_input_returns_the_same_loop(aws, flow) -> None:
    a2i = aws("sagemaker-a2i-runtime")
    content = json.dumps({"taskObject": "s3://x/same.jpg"})
    first = a2i.start_human_loop(
        HumanLoopName="it-same", FlowDefinitionArn=flow["arn"], HumanLoopInput={"InputContent": content}
    )
    again = a2i.start_human_loop(
        HumanLoopName="it-same", FlowDefinitionArn=flow["arn"], HumanLoopInput={"InputContent": content}
    )
    assert again["HumanLoopArn"] == first["HumanLoopArn"]


def test_an_abandoned_loop_stays_in_progress_until_its_lifetime_ends(emulator, aws, flow) -> None:
    sagemaker, a2i = aws("sagemaker"), aws("sagemaker-a2i-runtime")
    ui = sagemaker.describe_human_task_ui(HumanTaskUiName="it-ui")["HumanTaskUiArn"]
    short = create_flow_definition(sagemaker, "it-fd-short", ui, TaskAvailabilityLifetimeInSeconds=1)
    wait_for(
        lambda: (
            sagemaker.describe_flow_definition(FlowDefinitionName="it-fd-short")["FlowDefinitionStatus"]
            == "Active"
        )
    )
    original = emulator.a2i.reviewer
    emulator.a2i.reviewer = type(original)(delay=0.1, abandon_fraction=1.0)
    try:
        a2i.start_human_loop(
            HumanLoopName="it-abandoned",
            FlowDefinitionArn=short,
            HumanLoopInput={"InputContent": json.dumps({"taskObject": "s3://x/y.jpg"})},
        )
        time.sleep(0.3)
        assert a2i.describe_human_loop(HumanLoopName="it-abandoned")["HumanLoopStatus"] == "InProgress"
        wait_for(lambda: a2i.describe_human_loop(HumanLoopName="it-abandoned")["HumanLoopStatus"] == "Failed")
        assert a2i.describe_human_loop(HumanLoopName="it-abandoned")["FailureCode"] == "TaskExpired"
    finally:
        emulator.a2i.reviewer = original
