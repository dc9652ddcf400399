"""SageMakerWaitTrigger: the provider's SageMaker wait, its first check one delay after the deferral
and every request counted, run through the provider's ``async_wait`` on a stubbed client."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook
from airflow.providers.amazon.aws.utils import waiter_with_logging
from airflow.providers.amazon.aws.waiters.base_waiter import BaseBotoWaiter
from botocore.stub import Stubber
from botocore.waiter import create_waiter_with_client

from active_learning.triggers import aws_waits
from active_learning.triggers.aws_waits import SageMakerWaitTrigger

REGION = "us-east-1"
JOB = "active-learning-20261126-0a1b2c3d"
CARRIED = {"calls": 5, "retried_calls": 1, "retries": {"CreateTrainingJob": 1}}


class _AsyncWaiter:
    def __init__(self, waiter: Any) -> None:
        self._waiter = waiter

    async def wait(self, **kwargs: Any) -> None:
        self._waiter.wait(**kwargs)


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The trigger's async client and waiter routed to a stubbed synchronous SageMaker client."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    sync_client = SageMakerHook(aws_conn_id=None, region_name=REGION).conn

    @asynccontextmanager
    async def client_context() -> AsyncIterator[Any]:
        yield sync_client

    async def get_async_conn(self: SageMakerHook) -> Any:
        return client_context()

    def async_waiter(self: BaseBotoWaiter, waiter_name: str) -> _AsyncWaiter:
        return _AsyncWaiter(create_waiter_with_client(waiter_name, self.model, self.client))

    monkeypatch.setattr(SageMakerHook, "get_async_conn", get_async_conn)
    monkeypatch.setattr(BaseBotoWaiter, "_get_async_waiter_with_client", async_waiter)
    with Stubber(sync_client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    recorded: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float, *args: Any, **kwargs: Any) -> Any:
        recorded.append(delay)
        return await real_sleep(0)

    monkeypatch.setattr(aws_waits.asyncio, "sleep", sleep)
    monkeypatch.setattr(waiter_with_logging.asyncio, "sleep", sleep)
    return recorded


def trigger(**overrides: Any) -> SageMakerWaitTrigger:
    kwargs = {
        "job_name": JOB,
        "job_type": "training",
        "waiter_delay": 30,
        "waiter_max_attempts": 5,
        "aws_conn_id": None,
        "region_name": REGION,
        "carried_requests": CARRIED,
    }
    return SageMakerWaitTrigger(**(kwargs | overrides))


def describe(stub: Stubber, status: str, reason: str | None = None) -> None:
    response: dict[str, Any] = {
        "TrainingJobName": JOB,
        "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:123456789012:training-job/{JOB}",
        "ModelArtifacts": {"S3ModelArtifacts": "s3://b/k/model.tar.gz"},
        "TrainingJobStatus": status,
        "SecondaryStatus": status,
        "AlgorithmSpecification": {"TrainingInputMode": "Pipe"},
        "ResourceConfig": {"InstanceType": "ml.p3.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "CreationTime": datetime(2026, 11, 26, tzinfo=UTC),
    }
    if reason:
        response["FailureReason"] = reason
    stub.add_response("describe_training_job", response, {"TrainingJobName": JOB})


def run(trigger: SageMakerWaitTrigger) -> list[dict[str, Any]]:
    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    return asyncio.run(collect())


def test_serializes_with_its_own_classpath_and_the_carried_requests() -> None:
    classpath, kwargs = trigger().serialize()

    assert classpath == "active_learning.triggers.aws_waits.SageMakerWaitTrigger"
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs["carried_requests"] == CARRIED


def test_the_first_check_comes_one_delay_after_the_deferral(client: Stubber, sleeps: list[float]) -> None:
    """Issue 15.5: a trigger firing at once loses the task's try to apache/airflow#72716."""
    describe(client, "InProgress")
    describe(client, "Completed")

    (event,) = run(trigger())

    assert sleeps == [30, 30]  # before the first check, and between the two
    assert event == {
        "status": "success",
        "job_name": JOB,
        "aws_requests": {"calls": 7, "retried_calls": 1, "retries": {"CreateTrainingJob": 1}},
    }


def test_a_failed_job_is_a_failed_event_with_the_requests(client: Stubber, sleeps: list[float]) -> None:
    describe(client, "Failed", "AlgorithmError: no labels")

    (event,) = run(trigger(carried_requests=None))

    assert event["status"] == "failed"
    assert event["message"] == "AlgorithmError: no labels"
    assert event["aws_requests"]["calls"] == 1
