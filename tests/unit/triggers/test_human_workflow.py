"""FlowDefinitionActiveTrigger: serialization, and run() through our JSON waiter on a stubbed client.

aiobotocore (the async client the provider's triggers use) is replaced by the real synchronous
SageMaker client wrapped in an async adapter, so run() exercises the provider's ``async_wait``, our
``waiters/human_workflow.json`` and the trigger's events, with Stubber answering DescribeFlowDefinition.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from airflow.providers.amazon.aws.waiters.base_waiter import BaseBotoWaiter
from airflow.triggers.base import TriggerEvent
from botocore.stub import Stubber
from botocore.waiter import create_waiter_with_client

from active_learning.hooks.human_workflow import HumanWorkflowHook
from active_learning.triggers.human_workflow import FlowDefinitionActiveTrigger

REGION = "us-east-1"
ACCOUNT = "123456789012"
FD_NAME = "active-learning-fd-ba9876543210"
FD_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:flow-definition/{FD_NAME}"
CLASSPATH = "active_learning.triggers.human_workflow.FlowDefinitionActiveTrigger"


def _trigger(**overrides: Any) -> FlowDefinitionActiveTrigger:
    kwargs: dict[str, Any] = {
        "flow_definition_name": FD_NAME,
        "waiter_delay": 0,
        "waiter_max_attempts": 5,
        "aws_conn_id": None,
        "region_name": REGION,
    }
    return FlowDefinitionActiveTrigger(**(kwargs | overrides))


# ---------------------------------------------------------------------------------- serialize
def test_serialize_uses_the_plugin_classpath_and_all_arguments() -> None:
    trigger = _trigger(waiter_delay=15, waiter_max_attempts=40, aws_conn_id="aws_a2i")

    classpath, kwargs = trigger.serialize()

    assert classpath == CLASSPATH
    assert kwargs == {
        "flow_definition_name": FD_NAME,
        "waiter_delay": 15,
        "waiter_max_attempts": 40,
        "aws_conn_id": "aws_a2i",
        "region_name": REGION,
        "carried_requests": None,
    }


def test_serialized_trigger_rebuilds_an_equal_trigger() -> None:
    trigger = _trigger(verify=False, botocore_config={"retries": {"mode": "standard"}})
    classpath, kwargs = trigger.serialize()

    module_name, class_name = classpath.rsplit(".", 1)
    rebuilt = getattr(importlib.import_module(module_name), class_name)(**kwargs)

    assert type(rebuilt) is FlowDefinitionActiveTrigger
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs["verify"] is False
    assert kwargs["botocore_config"] == {"retries": {"mode": "standard"}}
    assert rebuilt.waiter_name == "FlowDefinitionActive"
    assert rebuilt.waiter_args == {"FlowDefinitionName": FD_NAME}
    assert rebuilt.return_key == "flow_definition_name"
    assert rebuilt.return_value == FD_NAME


def test_trigger_builds_our_hook_with_its_connection_settings() -> None:
    hook = _trigger(aws_conn_id=None, region_name="eu-west-1").hook()

    assert isinstance(hook, HumanWorkflowHook)
    assert hook.region_name == "eu-west-1"
    assert hook.aws_conn_id is None


# ---------------------------------------------------------------------------------- run
class _AsyncWaiter:
    """Stands in for an aiobotocore waiter: same ``wait`` keywords, awaited."""

    def __init__(self, waiter: Any) -> None:
        self._waiter = waiter

    async def wait(self, **kwargs: Any) -> None:
        self._waiter.wait(**kwargs)


@pytest.fixture(scope="module")
def sagemaker_client() -> Any:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_SESSION_TOKEN", "testing")
        env.delenv("AWS_PROFILE", raising=False)
        return HumanWorkflowHook(aws_conn_id=None, region_name=REGION).conn


@pytest.fixture
def hooks_used(sagemaker_client: Any, monkeypatch: pytest.MonkeyPatch) -> list[HumanWorkflowHook]:
    """Route the trigger's async client and waiter to the synchronous client; record the hooks."""
    hooks_used: list[HumanWorkflowHook] = []

    @asynccontextmanager
    async def client_context() -> AsyncIterator[Any]:
        yield sagemaker_client

    async def get_async_conn(self: HumanWorkflowHook) -> Any:
        hooks_used.append(self)
        return client_context()

    def async_waiter(self: BaseBotoWaiter, waiter_name: str) -> _AsyncWaiter:
        return _AsyncWaiter(create_waiter_with_client(waiter_name, self.model, self.client))

    monkeypatch.setattr(HumanWorkflowHook, "get_async_conn", get_async_conn)
    monkeypatch.setattr(BaseBotoWaiter, "_get_async_waiter_with_client", async_waiter)
    return hooks_used


@pytest.fixture
def stub(sagemaker_client: Any, hooks_used: list[HumanWorkflowHook]) -> Iterator[Stubber]:
    with Stubber(sagemaker_client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def _queue(stub: Stubber, *statuses: str) -> None:
    for status in statuses:
        response = {
            "FlowDefinitionArn": FD_ARN,
            "FlowDefinitionName": FD_NAME,
            "FlowDefinitionStatus": status,
            "CreationTime": datetime(2026, 11, 26, tzinfo=UTC),
            "OutputConfig": {"S3OutputPath": "s3://my-bucket/active-learning/a2i-output/"},
            "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/A2IRole",
        }
        if status == "Failed":
            response["FailureReason"] = "The role cannot be assumed by SageMaker"
        stub.add_response("describe_flow_definition", response, {"FlowDefinitionName": FD_NAME})


def _run(trigger: FlowDefinitionActiveTrigger) -> list[TriggerEvent]:
    async def collect() -> list[TriggerEvent]:
        return [event async for event in trigger.run()]

    return asyncio.run(collect())


def test_run_yields_success_once_the_flow_definition_is_active(
    stub: Stubber, hooks_used: list[HumanWorkflowHook]
) -> None:
    _queue(stub, "Initializing", "Initializing", "Active")

    events = _run(_trigger())

    assert [event.payload for event in events] == [
        {
            "status": "success",
            "flow_definition_name": FD_NAME,
            "aws_requests": {"calls": 3, "retried_calls": 0, "retries": {}},
        }
    ]
    (hook,) = hooks_used
    assert isinstance(hook, HumanWorkflowHook)
    assert hook.region_name == REGION


def test_run_yields_an_error_with_the_failure_reason(stub: Stubber) -> None:
    _queue(stub, "Initializing", "Failed")

    (event,) = _run(_trigger())

    assert event.payload["status"] == "error"
    assert event.payload["flow_definition_name"] == FD_NAME
    assert f"Flow definition {FD_NAME} did not become Active" in event.payload["message"]
    assert "The role cannot be assumed by SageMaker" in event.payload["message"]


def test_run_yields_an_error_when_the_flow_definition_is_being_deleted(stub: Stubber) -> None:
    _queue(stub, "Deleting")

    (event,) = _run(_trigger())

    assert event.payload["status"] == "error"
    assert "Deleting" in event.payload["message"]


def test_run_yields_an_error_after_max_attempts(stub: Stubber) -> None:
    _queue(stub, "Initializing", "Initializing", "Initializing")

    (event,) = _run(_trigger(waiter_max_attempts=3))

    assert event.payload["status"] == "error"
    assert "max attempts" in event.payload["message"]
    assert event.payload["flow_definition_name"] == FD_NAME
