"""HumanLoopTrigger: serialization round trip, and run() against a fake async A2I runtime client."""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.hooks import HierarchicalEmitter

from active_learning.hooks.a2i import A2IRuntimeHook
from active_learning.triggers import review_wait
from active_learning.triggers.human_loops import HumanLoopTrigger

FLOW_ARN = "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/active-learning-fd-0123456789ab"
PREFIX = "active-learning-20261126-"
OTHER_DAY = "active-learning-20261125-"
CREATED_AFTER = datetime(2026, 11, 26, 0, 55, tzinfo=UTC)
CREATED_BEFORE = datetime(2026, 11, 26, 1, 35, tzinfo=UTC)
HUMAN_LOOPS_URI = "s3://my-bucket/active-learning/runs/2026-11-26/human-loops.jsonl"


def loop(index: int, prefix: str = PREFIX) -> str:
    return f"{prefix}{index:016x}"


def summary(name: str, status: str, reason: str | None = None) -> dict[str, Any]:
    item = {"HumanLoopName": name, "HumanLoopStatus": status, "FlowDefinitionArn": FLOW_ARN}
    if reason is not None:
        item["FailureReason"] = reason
    return item


def page(*summaries: dict[str, Any]) -> dict[str, Any]:
    return {"HumanLoopSummaries": list(summaries)}


def make_trigger(**overrides: Any) -> HumanLoopTrigger:
    kwargs: dict[str, Any] = {
        "flow_definition_arn": FLOW_ARN,
        "human_loops_uri": HUMAN_LOOPS_URI,
        "created_after": CREATED_AFTER.isoformat(),
        "min_completed_fraction": 1.0,
        "deadline": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        "poll_interval": 0,
        "aws_conn_id": None,
        "region_name": "us-east-1",
    }
    return HumanLoopTrigger(**(kwargs | overrides))


class FakeClient:
    """The part of an aiobotocore A2I runtime client the trigger uses.

    ``checks`` holds, per ``paginate`` call, the pages to yield (or an exception to raise while
    iterating, as aiobotocore raises ClientError from the page iterator).
    """

    def __init__(self, checks: list[list[dict[str, Any]] | Exception]) -> None:
        self.checks = list(checks)
        self.paginators: list[str] = []
        self.paginate_calls: list[dict[str, Any]] = []
        # botocore's event system: each page fetched emits after-call, as a real client does
        self.meta = SimpleNamespace(events=HierarchicalEmitter())

    def get_paginator(self, name: str) -> FakeClient:
        self.paginators.append(name)
        return self

    def paginate(self, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        self.paginate_calls.append(kwargs)
        return self._pages(self.checks.pop(0))

    async def _pages(self, pages: list[dict[str, Any]] | Exception) -> AsyncIterator[dict[str, Any]]:
        if isinstance(pages, Exception):
            raise pages
        for item in pages:
            operation = SimpleNamespace(name="ListHumanLoops")
            self.meta.events.emit(
                "after-call.sagemaker-a2i-runtime.ListHumanLoops", parsed=item, model=operation
            )
            yield item


class FakeConnection:
    """What ``await hook.get_async_conn()`` returns: an async context manager giving the client."""

    def __init__(self, client: FakeClient) -> None:
        self.client = client
        self.entered = 0
        self.exited = 0

    async def __aenter__(self) -> FakeClient:
        self.entered += 1
        return self.client

    async def __aexit__(self, *exc_info: object) -> None:
        self.exited += 1


class FakeHook:
    def __init__(self, connection: FakeConnection | Exception) -> None:
        self.connection = connection

    async def get_async_conn(self) -> FakeConnection:
        if isinstance(self.connection, Exception):
            raise self.connection
        return self.connection


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the trigger's sleeps without really sleeping."""
    recorded: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float, *args: Any, **kwargs: Any) -> Any:
        recorded.append(delay)
        return await real_sleep(0)

    monkeypatch.setattr(review_wait.asyncio, "sleep", sleep)
    return recorded


def requests(calls: int) -> dict[str, Any]:
    """An event's ``aws_requests`` for ``calls`` requests, none retried."""
    return {"calls": calls, "retried_calls": 0, "retries": {}}


def run_with(
    monkeypatch: pytest.MonkeyPatch,
    trigger: HumanLoopTrigger,
    connection: FakeConnection | Exception,
    own: int = 2,
) -> list[dict[str, Any]]:
    """Run the trigger to its event; the run's own loops are ``loop(0)`` .. ``loop(own - 1)``."""
    monkeypatch.setattr(HumanLoopTrigger, "hook", lambda self: FakeHook(connection))

    async def own_loop_names(self: HumanLoopTrigger) -> frozenset[str]:
        return frozenset(loop(i) for i in range(own))

    monkeypatch.setattr(HumanLoopTrigger, "own_loop_names", own_loop_names)

    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    return asyncio.run(collect())


# --- serialization -----------------------------------------------------------------------------


def test_serialize_round_trips_through_its_own_classpath() -> None:
    trigger = make_trigger(
        created_before=CREATED_BEFORE.isoformat(),
        min_completed_fraction=0.8,
        poll_interval=300.0,
        aws_conn_id="aws_default",
        verify="/etc/ssl/ca.pem",
        botocore_config={"retries": {"mode": "adaptive"}},
    )

    classpath, kwargs = trigger.serialize()

    assert classpath == "active_learning.triggers.human_loops.HumanLoopTrigger"
    module_name, _, class_name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module_name), class_name)(**kwargs)
    assert type(rebuilt) is HumanLoopTrigger
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs["created_before"] == CREATED_BEFORE.isoformat()
    assert rebuilt.created_before == CREATED_BEFORE.isoformat()
    assert kwargs["human_loops_uri"] == HUMAN_LOOPS_URI
    assert kwargs["min_completed_fraction"] == 0.8
    assert kwargs["botocore_config"] == {"retries": {"mode": "adaptive"}}
    assert json.loads(json.dumps(kwargs)) == kwargs  # plain values only


def test_hook_carries_the_connection_settings() -> None:
    trigger = make_trigger(
        aws_conn_id="aws_review", region_name="eu-west-1", verify=False, botocore_config={"read_timeout": 5}
    )

    hook = trigger.hook()

    assert isinstance(hook, A2IRuntimeHook)
    assert hook.client_type == "sagemaker-a2i-runtime"
    assert hook.aws_conn_id == "aws_review"
    assert hook._region_name == "eu-west-1"
    assert hook._verify is False
    assert hook._config.read_timeout == 5


# --- run ---------------------------------------------------------------------------------------


def test_run_polls_until_done_then_sends_one_success_event(
    monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
) -> None:
    client = FakeClient(
        [
            [page(summary(loop(0), "Completed"), summary(loop(1), "InProgress"))],
            [
                page(summary(loop(0), "Completed"), summary(loop(0, OTHER_DAY), "InProgress")),
                page(summary(loop(1), "Failed", "The worker task expired")),
            ],
        ]
    )
    connection = FakeConnection(client)
    trigger = make_trigger(poll_interval=0.01)

    events = run_with(monkeypatch, trigger, connection)

    assert events == [
        {
            "status": "success",
            "progress": {
                "expected": 2,
                "counts": {"Completed": 1, "Failed": 1},
                "failures": {loop(1): "The worker task expired"},
            },
            "aws_requests": requests(3),  # one page, then two
        }
    ]
    assert sleeps == [0.01, 0.01]  # never a first check at once (apache/airflow#72716)
    assert client.paginators == ["list_human_loops", "list_human_loops"]
    assert client.checks == []
    assert (connection.entered, connection.exited) == (1, 1)


def test_run_pages_with_the_run_filter(monkeypatch: pytest.MonkeyPatch, sleeps: list[float]) -> None:
    client = FakeClient([[page(summary(loop(0), "Completed"), summary(loop(1), "Stopped"))]])

    events = run_with(monkeypatch, make_trigger(), FakeConnection(client))

    assert events[0]["status"] == "success"
    assert client.paginate_calls == [
        {
            "FlowDefinitionArn": FLOW_ARN,
            "CreationTimeAfter": CREATED_AFTER,
            "SortOrder": "Ascending",
            "PaginationConfig": {"PageSize": 100},
        }
    ]
    assert isinstance(client.paginate_calls[0]["CreationTimeAfter"], datetime)
    assert sleeps == [0]


def test_created_before_defaults_to_none_and_survives_serialization() -> None:
    _, kwargs = make_trigger().serialize()

    assert kwargs["created_before"] is None
    assert HumanLoopTrigger(**kwargs).created_before is None


def test_run_pages_within_the_creation_window_when_it_has_an_end(
    monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
) -> None:
    client = FakeClient([[page(summary(loop(0), "Completed"), summary(loop(1), "Completed"))]])

    events = run_with(
        monkeypatch, make_trigger(created_before=CREATED_BEFORE.isoformat()), FakeConnection(client)
    )

    assert events[0]["status"] == "success"
    assert client.paginate_calls == [
        {
            "FlowDefinitionArn": FLOW_ARN,
            "CreationTimeAfter": CREATED_AFTER,
            "CreationTimeBefore": CREATED_BEFORE,
            "SortOrder": "Ascending",
            "PaginationConfig": {"PageSize": 100},
        }
    ]
    assert isinstance(client.paginate_calls[0]["CreationTimeBefore"], datetime)


def test_run_finishes_early_once_enough_loops_completed(
    monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
) -> None:
    client = FakeClient(
        [[page(*(summary(loop(i), "Completed") for i in range(8)), summary(loop(8), "InProgress"))]]
    )
    trigger = make_trigger(min_completed_fraction=0.8)

    events = run_with(monkeypatch, trigger, FakeConnection(client), own=10)

    assert [event["status"] for event in events] == ["success"]
    assert events[0]["progress"]["counts"] == {"Completed": 8, "InProgress": 1}
    assert sleeps == [0]


def test_run_sends_a_timeout_event_after_the_deadline(
    monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
) -> None:
    client = FakeClient([[page(summary(loop(0), "Completed"), summary(loop(1), "InProgress"))]])
    trigger = make_trigger(deadline=(datetime.now(UTC) - timedelta(seconds=1)).isoformat())

    events = run_with(monkeypatch, trigger, FakeConnection(client))

    assert events == [
        {
            "status": "timeout",
            "progress": {"expected": 2, "counts": {"Completed": 1, "InProgress": 1}, "failures": {}},
            "aws_requests": requests(1),
        }
    ]
    assert sleeps == [0]
    assert len(client.paginate_calls) == 1


def test_run_reports_success_rather_than_timeout_when_done_at_the_deadline(
    monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
) -> None:
    client = FakeClient([[page(summary(loop(0), "Completed"), summary(loop(1), "Completed"))]])
    trigger = make_trigger(deadline=(datetime.now(UTC) - timedelta(seconds=1)).isoformat())

    events = run_with(monkeypatch, trigger, FakeConnection(client))

    assert [event["status"] for event in events] == ["success"]


def test_run_sends_an_error_event_when_the_client_raises(
    monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
) -> None:
    throttled = ClientError(
        {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "ListHumanLoops"
    )
    client = FakeClient([[page(summary(loop(0), "InProgress"))], throttled])
    connection = FakeConnection(client)

    events = run_with(monkeypatch, make_trigger(), connection)

    assert events == [
        {
            "status": "error",
            "message": "ClientError: An error occurred (ThrottlingException) when calling the "
            "ListHumanLoops operation: Rate exceeded",
            "aws_requests": requests(1),
        }
    ]
    assert sleeps == [0, 0]
    assert (connection.entered, connection.exited) == (1, 1)


def test_run_sends_an_error_event_when_no_client_can_be_made(monkeypatch: pytest.MonkeyPatch) -> None:
    events = run_with(monkeypatch, make_trigger(), ModuleNotFoundError("No module named 'aiobotocore'"))

    assert events == [
        {
            "status": "error",
            "message": "ModuleNotFoundError: No module named 'aiobotocore'",
            "aws_requests": requests(0),
        }
    ]


def test_the_event_counts_the_requests_the_task_made_before_it_deferred_and_the_triggers(
    monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
) -> None:
    """Issue 15.6: requests before a deferral and the trigger's polling were in no "AWS requests" line."""
    client = FakeClient([[page(summary(loop(0), "Completed"), summary(loop(1), "Completed"))]])
    carried = {"calls": 4, "retried_calls": 1, "retries": {"PutObject": 2}}
    trigger = make_trigger(carried_requests=carried)
    assert HumanLoopTrigger(**trigger.serialize()[1]).carried_requests == carried

    (event,) = run_with(monkeypatch, trigger, FakeConnection(client))

    assert event["aws_requests"] == {"calls": 5, "retried_calls": 1, "retries": {"PutObject": 2}}
