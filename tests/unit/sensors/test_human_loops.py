"""HumanLoopSensor against a real botocore client with Stubber (moto has no A2I runtime)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from airflow.sdk import PokeReturnValue
from airflow.sdk.exceptions import AirflowException, AirflowSensorTimeout, TaskDeferred
from botocore.stub import Stubber
from moto import mock_aws

from active_learning.hooks.a2i import A2IRuntimeHook
from active_learning.reviews import ReviewProgress
from active_learning.sensors.human_loops import HumanLoopSensor
from active_learning.triggers.human_loops import HumanLoopTrigger

MAX_REPORTED_FAILURES = 100  # ReviewProgress.to_dict keeps this many reasons

ACCOUNT = "123456789012"
FLOW_ARN = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:flow-definition/active-learning-fd-0123456789ab"
PREFIX = "active-learning-20261126-"
OTHER_DAY = "active-learning-20261125-"
CREATED_AFTER = datetime(2026, 11, 26, 0, 55, tzinfo=UTC)
CREATED_BEFORE = datetime(2026, 11, 26, 1, 35, tzinfo=UTC)
CREATED = datetime(2026, 11, 26, 1, 2, 3, tzinfo=UTC)
# One event per API call. Not "before-call": the Stubber answers that event from a wildcard handler
# that botocore runs before any handler registered for the exact event name.
LIST_CALL = "before-parameter-build.sagemaker-a2i-runtime.ListHumanLoops"
BASE_PARAMS = {
    "FlowDefinitionArn": FLOW_ARN,
    "CreationTimeAfter": CREATED_AFTER,
    "SortOrder": "Ascending",
    "MaxResults": 100,
}
# The request when the start task also gave the end of its creation-time window.
WINDOW_PARAMS = BASE_PARAMS | {"CreationTimeBefore": CREATED_BEFORE}


BUCKET = "my-bucket"
SETTINGS = {
    "bucket": BUCKET,
    "role_arn": f"arn:aws:iam::{ACCOUNT}:role/A2IRole",
    "workteam_arn": f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:workteam/private-crowd/reviewers",
}
HUMAN_LOOPS_KEY = "active-learning/runs/2026-11-26/human-loops.jsonl"


@pytest.fixture(autouse=True)
def s3() -> Iterator[Any]:
    """moto S3 holding the run's human-loops.jsonl (written by make_sensor)."""
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def write_own_loops(names: list[str]) -> None:
    """The run's human-loops.jsonl, as StartHumanLoopsOperator writes it."""
    body = "".join(json.dumps({"name": name, "source": f"s3://{BUCKET}/{name}.jpg"}) + "\n" for name in names)
    boto3.client("s3", region_name="us-east-1").put_object(Bucket=BUCKET, Key=HUMAN_LOOPS_KEY, Body=body)


def human_loops(loops: int, windowed: bool = False) -> dict[str, Any]:
    """What StartHumanLoopsOperator returns; ``windowed`` adds created_before (older results lack it)."""
    result = {
        "review_backend": "a2i",
        "loops": loops,
        "human_loops_uri": f"s3://{BUCKET}/{HUMAN_LOOPS_KEY}",
        "created_after": CREATED_AFTER.isoformat(),
        "flow_definition_arn": FLOW_ARN,
    }
    if windowed:
        result["created_before"] = CREATED_BEFORE.isoformat()
    return result


def make_sensor(loops: int = 3, windowed: bool = False, **kwargs: Any) -> HumanLoopSensor:
    """A sensor for a run whose own loops are ``loop(0)`` .. ``loop(loops - 1)``."""
    write_own_loops([loop(i) for i in range(loops)])
    return HumanLoopSensor(
        task_id="wait_for_human_loops",
        settings=SETTINGS,
        day="2026-11-26",
        human_loops=human_loops(loops, windowed),
        aws_conn_id=None,
        region_name="us-east-1",
        **kwargs,
    )


def runtime(sensor: HumanLoopSensor) -> A2IRuntimeHook:
    """The A2I backend's runtime hook, as the sensor's checks use it."""
    return sensor.aws_hook(A2IRuntimeHook)


def summary(name: str, status: str, reason: str | None = None) -> dict[str, Any]:
    item = {
        "HumanLoopName": name,
        "HumanLoopStatus": status,
        "CreationTime": CREATED,
        "FlowDefinitionArn": FLOW_ARN,
    }
    if reason is not None:
        item["FailureReason"] = reason
    return item


def loop(index: int, prefix: str = PREFIX) -> str:
    return f"{prefix}{index:016x}"


@pytest.fixture
def sensor() -> HumanLoopSensor:
    return make_sensor()


@pytest.fixture
def stub(sensor: HumanLoopSensor) -> Iterator[Stubber]:
    with Stubber(runtime(sensor).conn) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def count_list_calls(sensor: HumanLoopSensor) -> list[dict[str, Any]]:
    """Record the parameters of every ListHumanLoops call."""
    calls: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        calls.append(dict(params))

    runtime(sensor).conn.meta.events.register(LIST_CALL, record)
    return calls


# --- constructor -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_completed_fraction": 0}, "min_completed_fraction"),
        ({"min_completed_fraction": 1.5}, "min_completed_fraction"),
        ({"min_completed_fraction": -0.1}, "min_completed_fraction"),
        ({"on_timeout": "ignore"}, "on_timeout"),
    ],
)
def test_invalid_arguments_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_sensor(**kwargs)


@pytest.mark.parametrize("fraction", [0.01, 0.8, 1.0])
def test_fractions_within_bounds_are_accepted(fraction: float) -> None:
    assert make_sensor(min_completed_fraction=fraction).min_completed_fraction == fraction


def test_human_loops_is_templated_and_the_a2i_backend_checks_the_a2i_runtime(sensor: HumanLoopSensor) -> None:
    assert "human_loops" in HumanLoopSensor.template_fields
    assert runtime(sensor).conn.meta.service_model.service_name == "sagemaker-a2i-runtime"
    assert runtime(sensor).conn.meta.region_name == "us-east-1"


# --- poke --------------------------------------------------------------------------------------


def test_poke_is_not_done_while_loops_are_in_progress(sensor: HumanLoopSensor, stub: Stubber) -> None:
    # Two completed loops of another day would make it look done if they were counted.
    stub.add_response(
        "list_human_loops",
        {
            "HumanLoopSummaries": [
                summary(loop(0, OTHER_DAY), "Completed"),
                summary(loop(1, OTHER_DAY), "Completed"),
                summary(loop(0), "Completed"),
                summary(loop(1), "InProgress"),
                summary(loop(2), "Completed"),
            ]
        },
        BASE_PARAMS,
    )

    result = sensor.poke({})

    assert isinstance(result, PokeReturnValue)
    assert result.is_done is False
    assert result.xcom_value == {
        "expected": 3,
        "completed": 2,
        "counts": {"Completed": 2, "InProgress": 1},
        "failed_or_stopped": 0,
        "failures": {},
        "timed_out": False,
        "stopped_open_loops": 0,
    }


def test_poke_is_done_when_every_loop_is_terminal_and_reports_failures(
    sensor: HumanLoopSensor, stub: Stubber
) -> None:
    stub.add_response(
        "list_human_loops",
        {
            "HumanLoopSummaries": [
                summary(loop(0, OTHER_DAY), "InProgress"),
                summary(loop(0), "Completed"),
                summary(loop(1), "Failed", "The worker task expired"),
                summary(loop(2), "Stopped"),
            ]
        },
        BASE_PARAMS,
    )

    result = sensor.poke({})

    assert result.is_done is True
    assert result.xcom_value == {
        "expected": 3,
        "completed": 1,
        "counts": {"Completed": 1, "Failed": 1, "Stopped": 1},
        "failed_or_stopped": 2,
        "failures": {loop(1): "The worker task expired", loop(2): "Stopped"},
        "timed_out": False,
        "stopped_open_loops": 0,
    }


def test_poke_waits_for_loops_not_listed_yet(sensor: HumanLoopSensor, stub: Stubber) -> None:
    stub.add_response(
        "list_human_loops",
        {"HumanLoopSummaries": [summary(loop(0), "Completed"), summary(loop(1), "Completed")]},
        BASE_PARAMS,
    )

    assert sensor.poke({}).is_done is False


@pytest.mark.parametrize(("fraction", "done"), [(0.8, True), (0.9, False), (1.0, False)])
def test_min_completed_fraction_lets_the_sensor_finish_early(fraction: float, done: bool) -> None:
    sensor = make_sensor(loops=10, min_completed_fraction=fraction)
    items = [summary(loop(i), "Completed") for i in range(8)]
    items += [summary(loop(i), "InProgress") for i in range(8, 10)]
    with Stubber(runtime(sensor).conn) as stub:
        stub.add_response("list_human_loops", {"HumanLoopSummaries": items}, BASE_PARAMS)

        result = sensor.poke({})

        stub.assert_no_pending_responses()
    assert result.is_done is done
    assert result.xcom_value["completed"] == 8
    assert result.xcom_value["counts"] == {"Completed": 8, "InProgress": 2}


@pytest.mark.parametrize(("windowed", "params"), [(False, BASE_PARAMS), (True, WINDOW_PARAMS)])
def test_the_list_request_carries_created_before_only_when_given(
    windowed: bool, params: dict[str, Any]
) -> None:
    sensor = make_sensor(loops=1, windowed=windowed)
    calls = count_list_calls(sensor)
    with Stubber(runtime(sensor).conn) as stub:  # expected_params must match the request exactly
        stub.add_response("list_human_loops", {"HumanLoopSummaries": [summary(loop(0), "Completed")]}, params)

        assert sensor.poke({}).is_done is True

        stub.assert_no_pending_responses()
    assert calls == [params]
    assert ("CreationTimeBefore" in calls[0]) is windowed


def test_one_check_of_1000_loops_costs_10_list_calls() -> None:
    sensor = make_sensor(loops=1000, windowed=True)
    calls = count_list_calls(sensor)
    with Stubber(runtime(sensor).conn) as stub:
        for page in range(10):
            response: dict[str, Any] = {
                "HumanLoopSummaries": [
                    summary(loop(i), "Completed") for i in range(page * 100, page * 100 + 100)
                ]
            }
            if page < 9:
                response["NextToken"] = f"token-{page + 1}"
            params = WINDOW_PARAMS | ({"NextToken": f"token-{page}"} if page else {})
            stub.add_response("list_human_loops", response, params)

        result = sensor.poke({})

        stub.assert_no_pending_responses()
    assert len(calls) == 10
    assert calls == [WINDOW_PARAMS | ({"NextToken": f"token-{page}"} if page else {}) for page in range(10)]
    for call in calls:
        assert call["MaxResults"] == 100
        assert call["FlowDefinitionArn"] == FLOW_ARN
        assert call["CreationTimeAfter"] == CREATED_AFTER
        assert call["CreationTimeBefore"] == CREATED_BEFORE
    assert result.is_done is True
    assert result.xcom_value["completed"] == 1000
    assert result.xcom_value["counts"] == {"Completed": 1000}


# --- execute (not deferrable) ------------------------------------------------------------------


@pytest.mark.parametrize("deferrable", [False, True])
def test_execute_with_no_loops_returns_at_once_without_any_call(deferrable: bool) -> None:
    sensor = make_sensor(loops=0, deferrable=deferrable)
    calls = count_list_calls(sensor)
    with Stubber(runtime(sensor).conn):  # nothing queued: any call would raise
        result = sensor.execute({})

    assert calls == []
    assert result == {
        "expected": 0,
        "completed": 0,
        "counts": {},
        "failed_or_stopped": 0,
        "failures": {},
        "timed_out": False,
        "stopped_open_loops": 0,
    }


def test_execute_pokes_until_done_and_returns_the_report() -> None:
    sensor = make_sensor(deferrable=False, poke_interval=0, timeout=60)
    calls = count_list_calls(sensor)
    with Stubber(runtime(sensor).conn) as stub:
        stub.add_response(
            "list_human_loops",
            {"HumanLoopSummaries": [summary(loop(i), "InProgress") for i in range(3)]},
            BASE_PARAMS,
        )
        stub.add_response(
            "list_human_loops",
            {"HumanLoopSummaries": [summary(loop(i), "Completed") for i in range(3)]},
            BASE_PARAMS,
        )

        result = sensor.execute({})

        stub.assert_no_pending_responses()
    assert len(calls) == 2
    assert result["counts"] == {"Completed": 3}
    assert result["timed_out"] is False


@pytest.fixture
def never_done(
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[str], tuple[HumanLoopSensor, list[datetime], list[str]]]:
    """A sensor whose loops stay in progress, with a tiny timeout; records every check."""

    def make(on_timeout: str) -> tuple[HumanLoopSensor, list[datetime], list[str]]:
        sensor = make_sensor(
            windowed=True, deferrable=False, on_timeout=on_timeout, timeout=0.01, poke_interval=0.01
        )
        checks: list[datetime] = []

        def list_human_loops(
            flow_definition_arn: str, created_after: datetime, created_before: datetime | None = None
        ) -> list[dict[str, Any]]:
            assert (flow_definition_arn, created_after) == (FLOW_ARN, CREATED_AFTER)
            assert created_before == CREATED_BEFORE
            checks.append(created_after)
            return [summary(loop(0), "Completed"), summary(loop(1), "InProgress")]

        monkeypatch.setattr(runtime(sensor), "list_human_loops", list_human_loops)
        stopped: list[str] = []
        monkeypatch.setattr(runtime(sensor), "stop_human_loop", lambda name: stopped.append(name) or True)
        return sensor, checks, stopped

    return make


def test_timeout_with_continue_returns_what_is_complete(never_done: Any) -> None:
    sensor, checks, stopped = never_done("continue")

    # Poke mode needs no task-runner context: BaseSensorOperator.execute only reads context["ti"]
    # in reschedule mode, and ExecutorSafeguard only warns (allow_nested_operators defaults to True).
    result = sensor.execute({})

    assert result == {
        "expected": 3,
        "completed": 1,
        "counts": {"Completed": 1, "InProgress": 1},
        "failed_or_stopped": 0,
        "failures": {},
        "timed_out": True,
        "stopped_open_loops": 1,
    }
    assert len(checks) >= 3  # at least one poke, the final check, and the listing of open loops
    assert stopped == [loop(1)]  # the loop still open is stopped: nobody will read its answer


def test_timeout_with_fail_raises(never_done: Any) -> None:
    sensor, _, stopped = never_done("fail")

    with pytest.raises(AirflowSensorTimeout, match="stopped 1 open reviews"):
        sensor.execute({})
    # Issue 7.4: stopped before failing (a timed-out sensor is not retried): nobody works on them
    # for nothing, and the answers already given are harvested by augmented_manifest
    assert stopped == [loop(1)]


# --- deferrable --------------------------------------------------------------------------------


@pytest.mark.parametrize("windowed", [False, True])
def test_deferrable_execute_checks_once_then_defers_to_the_trigger(windowed: bool) -> None:
    """Issue 15.5: one check before deferring; the trigger checks first one interval later."""
    sensor = make_sensor(
        loops=7,
        windowed=windowed,
        deferrable=True,
        min_completed_fraction=0.9,
        timeout=3600,
        poke_interval=30,
        verify=False,
        botocore_config={"retries": {"mode": "standard"}},
    )
    calls = count_list_calls(sensor)
    before = datetime.now(UTC)
    with Stubber(runtime(sensor).conn) as stub:
        stub.add_response(
            "list_human_loops",
            {"HumanLoopSummaries": [summary(loop(i), "InProgress") for i in range(7)]},
            WINDOW_PARAMS if windowed else BASE_PARAMS,
        )
        with pytest.raises(TaskDeferred) as deferred:
            sensor.execute({})
    after = datetime.now(UTC)

    assert len(calls) == 1
    assert deferred.value.method_name == "execute_complete"
    trigger = deferred.value.trigger
    assert isinstance(trigger, HumanLoopTrigger)
    classpath, kwargs = trigger.serialize()
    assert classpath == "active_learning.triggers.human_loops.HumanLoopTrigger"
    deadline = datetime.fromisoformat(kwargs.pop("deadline"))
    assert before + timedelta(seconds=3600) <= deadline <= after + timedelta(seconds=3600)
    assert deadline.tzinfo is not None
    assert kwargs == {
        "flow_definition_arn": FLOW_ARN,
        "human_loops_uri": f"s3://{BUCKET}/{HUMAN_LOOPS_KEY}",
        "created_after": CREATED_AFTER.isoformat(),
        "created_before": CREATED_BEFORE.isoformat() if windowed else None,
        "min_completed_fraction": 0.9,
        "poll_interval": 30,
        "aws_conn_id": None,
        "region_name": "us-east-1",
        "verify": False,
        "botocore_config": {"retries": {"mode": "standard"}},
        "carried_requests": {"calls": 1, "retried_calls": 0, "retries": {}},  # the check before
    }


def test_deferrable_execute_done_at_the_first_check_never_defers() -> None:
    """Issue 15.5: a trigger that would fire at once loses the try to apache/airflow#72716."""
    sensor = make_sensor(deferrable=True)
    with Stubber(runtime(sensor).conn) as stub:
        stub.add_response(
            "list_human_loops",
            {"HumanLoopSummaries": [summary(loop(i), "Completed") for i in range(3)]},
            BASE_PARAMS,
        )
        result = sensor.execute({})

    assert (result["expected"], result["completed"], result["timed_out"]) == (3, 3, False)


def event(status: str, counts: dict[str, int], failures: dict[str, str] | None = None) -> dict[str, Any]:
    return {"status": status, "progress": {"expected": 3, "counts": counts, "failures": failures or {}}}


def test_execute_complete_returns_the_report_on_success() -> None:
    sensor = make_sensor(deferrable=True)

    result = sensor.execute_complete(
        {}, event("success", {"Completed": 2, "Failed": 1}, {loop(2): "The worker task expired"})
    )

    assert result == {
        "expected": 3,
        "completed": 2,
        "counts": {"Completed": 2, "Failed": 1},
        "failed_or_stopped": 1,
        "failures": {loop(2): "The worker task expired"},
        "timed_out": False,
        "stopped_open_loops": 0,
    }


def test_execute_complete_goes_on_after_a_timeout_when_told_to_continue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sensor = make_sensor(deferrable=True, on_timeout="continue")
    listed = [summary(loop(0), "Completed"), summary(loop(1), "InProgress"), summary(loop(2), "InProgress")]
    monkeypatch.setattr(runtime(sensor), "list_human_loops", lambda *args: listed)
    calls: list[str] = []
    monkeypatch.setattr(runtime(sensor), "stop_human_loop", lambda name: calls.append(name) or True)

    result = sensor.execute_complete({}, event("timeout", {"Completed": 1, "InProgress": 2}))

    assert calls == [loop(1), loop(2)]
    assert result["stopped_open_loops"] == 2
    assert result["timed_out"] is True
    assert result["completed"] == 1
    assert result["counts"] == {"Completed": 1, "InProgress": 2}


def test_execute_complete_fails_after_a_timeout_when_told_to_fail() -> None:
    sensor = make_sensor(deferrable=True, on_timeout="fail")
    with Stubber(runtime(sensor).conn) as stub:
        open_loops = [summary(loop(0), "Completed"), summary(loop(1), "InProgress")]
        stub.add_response("list_human_loops", {"HumanLoopSummaries": open_loops}, BASE_PARAMS)
        stub.add_response("stop_human_loop", {}, {"HumanLoopName": loop(1)})

        with pytest.raises(AirflowSensorTimeout, match=r"1/3 loops terminal.*stopped 1 open reviews"):
            sensor.execute_complete({}, event("timeout", {"Completed": 1, "InProgress": 2}))

        stub.assert_no_pending_responses()


def test_execute_complete_raises_on_an_error_event() -> None:
    sensor = make_sensor(deferrable=True)

    with pytest.raises(AirflowException, match="ThrottlingException: Rate exceeded") as raised:
        sensor.execute_complete({}, {"status": "error", "message": "ThrottlingException: Rate exceeded"})
    assert not isinstance(raised.value, AirflowSensorTimeout)


def test_execute_complete_raises_without_an_event() -> None:
    sensor = make_sensor(deferrable=True)

    with pytest.raises(AirflowException, match="event is None"):
        sensor.execute_complete({}, None)


def test_reported_failures_are_capped_but_all_counted() -> None:
    sensor = make_sensor(deferrable=True)
    failures = {loop(i): f"reason {i}" for i in range(MAX_REPORTED_FAILURES + 50)}

    result = sensor.execute_complete(
        {},
        {
            "status": "success",
            "progress": {
                "expected": len(failures),
                "counts": {"Failed": len(failures)},
                "failures": failures,
            },
        },
    )

    assert result["failed_or_stopped"] == MAX_REPORTED_FAILURES + 50
    assert len(result["failures"]) == MAX_REPORTED_FAILURES
    assert result["failures"] == dict(sorted(failures.items())[:MAX_REPORTED_FAILURES])


def test_failed_or_stopped_counts_every_loop_when_the_event_carries_only_the_first_reasons() -> None:
    # The trigger's event keeps MAX_REPORTED_FAILURES reasons (ReviewProgress.to_dict); counts are complete.
    sensor = make_sensor(deferrable=True)
    progress = ReviewProgress(
        200,
        {"Completed": 50, "Failed": 120, "Stopped": 30},
        {loop(i): "The worker task expired" if i < 120 else "Stopped" for i in range(150)},
    )

    result = sensor.execute_complete({}, {"status": "success", "progress": progress.to_dict()})

    assert result["failed_or_stopped"] == 150
    assert result["failures"] == dict(sorted(progress.failures.items())[:MAX_REPORTED_FAILURES])
    assert result["completed"] == 50
