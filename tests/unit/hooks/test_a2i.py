"""A2IRuntimeHook against a real botocore client with Stubber (moto has no A2I runtime)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from active_learning.hooks.a2i import (
    LIST_PAGE_SIZE,
    A2IRuntimeHook,
    HumanLoopConflictError,
    list_human_loops_request,
)

ACCOUNT = "123456789012"
FLOW_ARN = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:flow-definition/active-learning-fd-0123456789ab"
OTHER_FLOW_ARN = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:flow-definition/someone-elses-flow"
LOOP = "active-learning-20261126-0123456789abcdef"
LOOP_ARN = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:human-loop/{LOOP}"
CREATED = datetime(2026, 11, 26, 1, 2, 3, tzinfo=UTC)
INPUT = json.dumps({"taskObject": "s3://my-bucket/incoming/2026-11-26/a.jpg", "labels": ["cat"]})


@pytest.fixture(scope="module")
def shared_hook() -> A2IRuntimeHook:
    """One hook and client for the module: building a client costs a few hundred milliseconds."""
    with pytest.MonkeyPatch.context() as env:  # the client resolves the fake credentials once, here
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_SESSION_TOKEN", "testing")
        env.delenv("AWS_PROFILE", raising=False)
        hook = A2IRuntimeHook(aws_conn_id=None, region_name="us-east-1")
        assert hook.conn is not None
    return hook


@pytest.fixture
def hook(shared_hook: A2IRuntimeHook) -> A2IRuntimeHook:
    return shared_hook


@pytest.fixture
def stub(hook: A2IRuntimeHook) -> Iterator[Stubber]:
    with Stubber(hook.conn) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def _start_params(name: str = LOOP) -> dict:
    return {"HumanLoopName": name, "FlowDefinitionArn": FLOW_ARN, "HumanLoopInput": {"InputContent": INPUT}}


def _described(flow_arn: str) -> dict:
    return {
        "CreationTime": CREATED,
        "HumanLoopStatus": "InProgress",
        "HumanLoopName": LOOP,
        "HumanLoopArn": LOOP_ARN,
        "FlowDefinitionArn": flow_arn,
    }


def test_hook_uses_the_a2i_runtime_client(hook: A2IRuntimeHook) -> None:
    assert hook.client_type == "sagemaker-a2i-runtime"
    assert hook.conn.meta.service_model.service_name == "sagemaker-a2i-runtime"
    assert hook.conn.meta.region_name == "us-east-1"


def test_start_human_loop_starts_a_new_loop(hook: A2IRuntimeHook, stub: Stubber) -> None:
    stub.add_response("start_human_loop", {"HumanLoopArn": LOOP_ARN}, _start_params())

    result = hook.start_human_loop(LOOP, FLOW_ARN, INPUT)

    assert result == {"arn": LOOP_ARN, "started": True}


def test_start_human_loop_adopts_the_loop_a_previous_try_started(hook: A2IRuntimeHook, stub: Stubber) -> None:
    stub.add_client_error(
        "start_human_loop",
        service_error_code="ConflictException",
        service_message=f"Human loop {LOOP} already exists",
        http_status_code=409,
        expected_params=_start_params(),
    )
    stub.add_response("describe_human_loop", _described(FLOW_ARN), {"HumanLoopName": LOOP})

    result = hook.start_human_loop(LOOP, FLOW_ARN, INPUT)

    assert result == {"arn": LOOP_ARN, "started": False, "creation_time": CREATED}


def test_start_human_loop_refuses_a_name_taken_under_another_flow_definition(
    hook: A2IRuntimeHook, stub: Stubber
) -> None:
    stub.add_client_error(
        "start_human_loop",
        service_error_code="ConflictException",
        service_message="conflict",
        http_status_code=409,
        expected_params=_start_params(),
    )
    stub.add_response("describe_human_loop", _described(OTHER_FLOW_ARN), {"HumanLoopName": LOOP})

    with pytest.raises(HumanLoopConflictError, match="someone-elses-flow"):
        hook.start_human_loop(LOOP, FLOW_ARN, INPUT)


@pytest.mark.parametrize(
    "code", ["ValidationException", "ThrottlingException", "ServiceQuotaExceededException"]
)
def test_start_human_loop_raises_other_errors_without_describing(
    hook: A2IRuntimeHook, stub: Stubber, code: str
) -> None:
    stub.add_client_error("start_human_loop", service_error_code=code, http_status_code=400)

    with pytest.raises(ClientError) as caught:
        hook.start_human_loop(LOOP, FLOW_ARN, INPUT)

    assert caught.value.response["Error"]["Code"] == code


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Upper-Case",
        "under_score",
        "-leading-hyphen",
        "trailing-hyphen-",
        "a" * 64,
        "dots.in.name",
    ],
)
def test_start_human_loop_rejects_invalid_names_before_any_call(
    hook: A2IRuntimeHook, stub: Stubber, name: str
) -> None:
    # No response is queued: any API call would fail with a StubResponseError, not ValueError.
    with pytest.raises(ValueError, match="invalid human loop name"):
        hook.start_human_loop(name, FLOW_ARN, INPUT)


def test_start_human_loop_accepts_a_63_character_name(hook: A2IRuntimeHook, stub: Stubber) -> None:
    name = "a" * 63
    stub.add_response(
        "start_human_loop", {"HumanLoopArn": f"{LOOP_ARN[: -len(LOOP)]}{name}"}, _start_params(name)
    )

    assert hook.start_human_loop(name, FLOW_ARN, INPUT)["started"] is True


def test_describe_human_loop_passes_the_response_through(hook: A2IRuntimeHook, stub: Stubber) -> None:
    response = _described(FLOW_ARN) | {
        "HumanLoopStatus": "Completed",
        "HumanLoopOutput": {"OutputS3Uri": "s3://my-bucket/active-learning/a2i-output/x/output.json"},
    }
    stub.add_response("describe_human_loop", response, {"HumanLoopName": LOOP})

    described = hook.describe_human_loop(LOOP)

    assert described["HumanLoopStatus"] == "Completed"
    assert described["HumanLoopOutput"]["OutputS3Uri"].endswith("/output.json")


def _summary(index: int) -> dict:
    return {
        "HumanLoopName": f"active-learning-20261126-{index:016x}",
        "HumanLoopStatus": "Completed" if index % 2 else "InProgress",
        "CreationTime": CREATED,
        "FlowDefinitionArn": FLOW_ARN,
    }


def test_list_human_loops_pages_through_every_summary(hook: A2IRuntimeHook, stub: Stubber) -> None:
    after = datetime(2026, 11, 26, tzinfo=UTC)
    base = {
        "FlowDefinitionArn": FLOW_ARN,
        "CreationTimeAfter": after,
        "SortOrder": "Ascending",
        "MaxResults": LIST_PAGE_SIZE,
    }
    pages = [list(range(0, 100)), list(range(100, 200)), list(range(200, 250))]
    stub.add_response(
        "list_human_loops",
        {"HumanLoopSummaries": [_summary(i) for i in pages[0]], "NextToken": "token-1"},
        base,
    )
    stub.add_response(
        "list_human_loops",
        {"HumanLoopSummaries": [_summary(i) for i in pages[1]], "NextToken": "token-2"},
        base | {"NextToken": "token-1"},
    )
    stub.add_response(
        "list_human_loops",
        {"HumanLoopSummaries": [_summary(i) for i in pages[2]]},
        base | {"NextToken": "token-2"},
    )
    calls: list[dict] = []

    def count(params: dict, **_: object) -> None:
        calls.append(dict(params))

    event = "before-parameter-build.sagemaker-a2i-runtime.ListHumanLoops"
    hook.conn.meta.events.register(event, count)
    try:
        summaries = list(hook.list_human_loops(FLOW_ARN, after))
    finally:
        hook.conn.meta.events.unregister(event, count)

    assert LIST_PAGE_SIZE == 100
    assert len(calls) == 3
    assert all(call["MaxResults"] == 100 and call["SortOrder"] == "Ascending" for call in calls)
    assert [s["HumanLoopName"] for s in summaries] == [_summary(i)["HumanLoopName"] for i in range(250)]


def test_list_human_loops_is_lazy(hook: A2IRuntimeHook, stub: Stubber) -> None:
    after = datetime(2026, 11, 26, tzinfo=UTC)
    stub.add_response(
        "list_human_loops", {"HumanLoopSummaries": [_summary(0), _summary(1)], "NextToken": "t"}
    )

    loops = hook.list_human_loops(FLOW_ARN, after)
    first = next(loops)

    # One page fetched; the second page is only requested when the first is used up.
    assert first["HumanLoopName"] == _summary(0)["HumanLoopName"]
    assert next(loops)["HumanLoopName"] == _summary(1)["HumanLoopName"]
    stub.add_response("list_human_loops", {"HumanLoopSummaries": []})
    assert list(loops) == []


def test_list_human_loops_of_an_empty_flow_definition(hook: A2IRuntimeHook, stub: Stubber) -> None:
    stub.add_response("list_human_loops", {"HumanLoopSummaries": []})

    assert list(hook.list_human_loops(FLOW_ARN, CREATED)) == []


def test_list_human_loops_with_created_before_sends_creation_time_before(
    hook: A2IRuntimeHook, stub: Stubber
) -> None:
    after = datetime(2026, 11, 26, tzinfo=UTC)
    before = datetime(2026, 11, 26, 1, 35, tzinfo=UTC)
    # Stubber compares the whole request: CreationTimeBefore must be there, with the other filters.
    stub.add_response(
        "list_human_loops",
        {"HumanLoopSummaries": [_summary(1)]},
        {
            "FlowDefinitionArn": FLOW_ARN,
            "CreationTimeAfter": after,
            "CreationTimeBefore": before,
            "SortOrder": "Ascending",
            "MaxResults": LIST_PAGE_SIZE,
        },
    )

    summaries = list(hook.list_human_loops(FLOW_ARN, after, before))

    assert [s["HumanLoopName"] for s in summaries] == [_summary(1)["HumanLoopName"]]


def test_list_human_loops_request_has_no_end_unless_given() -> None:
    after = datetime(2026, 11, 26, tzinfo=UTC)

    assert "CreationTimeBefore" not in list_human_loops_request(FLOW_ARN, after)
    assert list_human_loops_request(FLOW_ARN, after, CREATED)["CreationTimeBefore"] == CREATED


def test_stop_human_loop_stops_and_tolerates_loops_already_gone(hook: A2IRuntimeHook, stub: Stubber) -> None:
    stub.add_response("stop_human_loop", {}, {"HumanLoopName": "open-loop"})
    stub.add_client_error(
        "stop_human_loop", "ResourceNotFoundException", "not found", 404, {"HumanLoopName": "gone"}
    )
    stub.add_client_error(
        "stop_human_loop", "ThrottlingException", "slow down", 400, {"HumanLoopName": "busy"}
    )

    assert hook.stop_human_loop("open-loop") is True
    assert hook.stop_human_loop("gone") is False
    with pytest.raises(ClientError, match="ThrottlingException"):
        hook.stop_human_loop("busy")
