"""The local AWS's controls that make chaos uses: reviewers who hold a day's answers, an alarm that
rolls an endpoint update back, and the record of the updates that landed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from emulator.a2i import ReviewerConfig
from emulator.server import Emulator, EmulatorConfig
from tests.emulator.test_contract import BUCKET, ROLE, WORKTEAM, deploy, put_model
from tests.support import wait_for
from world import REFERENCE_METADATA
from world.scenes import DEMO_CLASSES, make_scenes

pytestmark = pytest.mark.integration


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(
        reviewer=ReviewerConfig(delay=0.1),
        config=EmulatorConfig(activation_delay=0.1, update_delay=0.2, training_start_delay=0.1),
    ) as running:
        yield running


def client(emulator: Emulator, service: str) -> Any:
    session = boto3.session.Session(aws_access_key_id="t", aws_secret_access_key="t", region_name="us-east-1")
    return session.client(service, endpoint_url=emulator.url)


def start_loops(emulator: Emulator, names: list[str]) -> Any:
    s3, sagemaker, a2i = (client(emulator, s) for s in ("s3", "sagemaker", "sagemaker-a2i-runtime"))
    s3.create_bucket(Bucket=BUCKET)
    ui = sagemaker.create_human_task_ui(HumanTaskUiName="ui", UiTemplate={"Content": "<crowd-form/>"})
    flow = sagemaker.create_flow_definition(
        FlowDefinitionName="fd",
        HumanLoopConfig={
            "WorkteamArn": WORKTEAM,
            "HumanTaskUiArn": ui["HumanTaskUiArn"],
            "TaskTitle": "t",
            "TaskDescription": "d",
            "TaskCount": 1,
        },
        OutputConfig={"S3OutputPath": f"s3://{BUCKET}/a2i-output"},
        RoleArn=ROLE,
    )["FlowDefinitionArn"]
    wait_for(
        lambda: (
            sagemaker.describe_flow_definition(FlowDefinitionName="fd")["FlowDefinitionStatus"] == "Active"
        ),
        timeout=30,
    )
    for name, (image, boxes) in zip(names, make_scenes(3, len(names), list(DEMO_CLASSES)), strict=True):
        reference = [{k: b[k] for k in ("label", "left", "top", "width", "height")} for b in boxes]
        s3.put_object(
            Bucket=BUCKET, Key=f"{name}.jpg", Body=image, Metadata={REFERENCE_METADATA: json.dumps(reference)}
        )
        task = {"taskObject": f"s3://{BUCKET}/{name}.jpg", "labels": list(DEMO_CLASSES)}
        a2i.start_human_loop(
            HumanLoopName=name, FlowDefinitionArn=flow, HumanLoopInput={"InputContent": json.dumps(task)}
        )
    return a2i


def statuses(a2i: Any, names: list[str]) -> dict[str, str]:
    return {name: a2i.describe_human_loop(HumanLoopName=name)["HumanLoopStatus"] for name in names}


def test_held_reviews_stay_open_until_released(emulator: Emulator) -> None:
    emulator.a2i.hold(lambda name: name.startswith("late-"))
    names = ["late-1", "late-2", "on-time-1"]
    a2i = start_loops(emulator, names)

    wait_for(lambda: statuses(a2i, names)["on-time-1"] == "Completed", timeout=30)
    assert statuses(a2i, names) == {"late-1": "InProgress", "late-2": "InProgress", "on-time-1": "Completed"}
    emulator.a2i.release()
    wait_for(lambda: set(statuses(a2i, names).values()) == {"Completed"}, timeout=30)


def test_an_alarmed_update_rolls_back_and_only_landed_updates_are_recorded(emulator: Emulator) -> None:
    s3, sagemaker = client(emulator, "s3"), client(emulator, "sagemaker")
    s3.create_bucket(Bucket=BUCKET)
    first = put_model(s3, "models/a/model.tar.gz", 1, 4)
    second = put_model(s3, "models/b/model.tar.gz", 2, 4)
    sagemaker.create_endpoint(EndpointName="e", EndpointConfigName=deploy(sagemaker, "a", first))
    sagemaker.get_waiter("endpoint_in_service").wait(EndpointName="e", WaiterConfig={"Delay": 0.2})
    emulator.sagemaker.alarmed_updates = 1
    config = deploy(sagemaker, "b", second)

    sagemaker.update_endpoint(EndpointName="e", EndpointConfigName=config)
    wait_for(lambda: "FailureReason" in sagemaker.describe_endpoint(EndpointName="e"), timeout=30)
    sagemaker.get_waiter("endpoint_in_service").wait(EndpointName="e", WaiterConfig={"Delay": 0.2})
    described = sagemaker.describe_endpoint(EndpointName="e")
    assert described["EndpointConfigName"] == "a-config"
    assert "AutoRollbackConfiguration went into ALARM state" in described["FailureReason"]
    assert emulator.sagemaker.landed_updates == []

    sagemaker.update_endpoint(EndpointName="e", EndpointConfigName=config)  # the alarm fired once
    wait_for(
        lambda: sagemaker.describe_endpoint(EndpointName="e")["EndpointConfigName"] == config, timeout=30
    )
    assert emulator.sagemaker.landed_updates == [("e", first, second)]
