"""HumanWorkflowHook on a real SageMaker client with Stubber (moto has no task UIs or flow definitions)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, WaiterError
from botocore.stub import Stubber

from active_learning.hooks.errors import is_not_found
from active_learning.hooks.human_workflow import MAX_TEMPLATE_CHARS, WAITERS, HumanWorkflowHook

ACCOUNT = "123456789012"
REGION = "us-east-1"
UI_NAME = "active-learning-ui-0123456789ab"
UI_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:human-task-ui/{UI_NAME}"
FD_NAME = "active-learning-fd-ba9876543210"
FD_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:flow-definition/{FD_NAME}"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/A2IRole"
WORKTEAM_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:workteam/private-crowd/reviewers"
OUTPUT = "s3://my-bucket/active-learning/a2i-output/"
CREATED = datetime(2026, 11, 26, 1, 2, 3, tzinfo=UTC)
TEMPLATE = '<crowd-form><crowd-bounding-box name="annotatedResult"></crowd-bounding-box></crowd-form>'
REQUEST = {
    "HumanLoopConfig": {
        "WorkteamArn": WORKTEAM_ARN,
        "HumanTaskUiArn": UI_ARN,
        "TaskTitle": "Review object detection boxes",
        "TaskDescription": "Correct the boxes",
        "TaskCount": 1,
        "TaskAvailabilityLifetimeInSeconds": 864000,
        "TaskTimeLimitInSeconds": 3600,
    },
    "OutputConfig": {"S3OutputPath": OUTPUT},
    "RoleArn": ROLE_ARN,
}


@pytest.fixture(scope="module")
def shared_hook() -> HumanWorkflowHook:
    """One hook and client for the module: building a client costs a few hundred milliseconds."""
    with pytest.MonkeyPatch.context() as env:  # the client resolves the fake credentials once, here
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_SESSION_TOKEN", "testing")
        env.delenv("AWS_PROFILE", raising=False)
        hook = HumanWorkflowHook(aws_conn_id=None, region_name=REGION)
        assert hook.conn is not None
    return hook


@pytest.fixture
def hook(shared_hook: HumanWorkflowHook) -> HumanWorkflowHook:
    return shared_hook


@pytest.fixture
def stub(hook: HumanWorkflowHook) -> Iterator[Stubber]:
    with Stubber(hook.conn) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def _task_ui(name: str = UI_NAME) -> dict:
    return {
        "HumanTaskUiArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:human-task-ui/{name}",
        "HumanTaskUiName": name,
        "HumanTaskUiStatus": "Active",
        "CreationTime": CREATED,
        "UiTemplate": {"Url": "https://example.s3.amazonaws.com/template.html", "ContentSha256": "ab" * 32},
    }


def _flow_definition(status: str = "Active", **extra: object) -> dict:
    return {
        "FlowDefinitionArn": FD_ARN,
        "FlowDefinitionName": FD_NAME,
        "FlowDefinitionStatus": status,
        "CreationTime": CREATED,
        "HumanLoopConfig": REQUEST["HumanLoopConfig"],
        "OutputConfig": REQUEST["OutputConfig"],
        "RoleArn": ROLE_ARN,
        **extra,
    }


def _not_found_validation(stub: Stubber, method: str, params: dict, what: str) -> None:
    # What SageMaker really answers for an absent task UI or flow definition.
    stub.add_client_error(
        method,
        service_error_code="ValidationException",
        service_message=f"Could not find {what}",
        http_status_code=400,
        expected_params=params,
    )


# ---------------------------------------------------------------------------------- errors helper
@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        ("ResourceNotFound", "Resource does not exist", True),
        ("ResourceNotFoundException", "", True),
        ("ValidationException", "Could not find HumanTaskUi arn:aws:...", True),
        ("ValidationException", "Flow definition x does not exist.", True),
        ("ValidationException", "1 validation error: value at 'humanTaskUiName' failed", False),
        ("AccessDeniedException", "Could not find a role", False),
        ("ThrottlingException", "Rate exceeded", False),
    ],
)
def test_is_not_found(code: str, message: str, expected: bool) -> None:
    err = ClientError({"Error": {"Code": code, "Message": message}}, "DescribeHumanTaskUi")
    assert is_not_found(err) is expected


# ---------------------------------------------------------------------------------- task UI
def test_hook_uses_a_sagemaker_client_and_our_waiters(hook: HumanWorkflowHook) -> None:
    assert hook.conn.meta.service_model.service_name == "sagemaker"
    assert Path(hook.waiter_path) == WAITERS
    assert WAITERS.is_file()
    assert "FlowDefinitionActive" in hook.list_waiters()


def test_ensure_task_ui_adopts_an_existing_ui(hook: HumanWorkflowHook, stub: Stubber) -> None:
    stub.add_response("describe_human_task_ui", _task_ui(), {"HumanTaskUiName": UI_NAME})

    assert hook.ensure_task_ui(UI_NAME, TEMPLATE) == UI_ARN


@pytest.mark.parametrize(
    ("code", "message"),
    [("ValidationException", f"Could not find HumanTaskUi {UI_NAME}"), ("ResourceNotFound", "absent")],
)
def test_ensure_task_ui_creates_an_absent_ui(
    hook: HumanWorkflowHook, stub: Stubber, code: str, message: str
) -> None:
    stub.add_client_error(
        "describe_human_task_ui",
        service_error_code=code,
        service_message=message,
        http_status_code=400,
        expected_params={"HumanTaskUiName": UI_NAME},
    )
    stub.add_response(
        "create_human_task_ui",
        {"HumanTaskUiArn": UI_ARN},
        {"HumanTaskUiName": UI_NAME, "UiTemplate": {"Content": TEMPLATE}},
    )

    assert hook.ensure_task_ui(UI_NAME, TEMPLATE) == UI_ARN


def test_ensure_task_ui_adopts_the_ui_a_concurrent_try_created(
    hook: HumanWorkflowHook, stub: Stubber
) -> None:
    _not_found_validation(stub, "describe_human_task_ui", {"HumanTaskUiName": UI_NAME}, "HumanTaskUi")
    stub.add_client_error(
        "create_human_task_ui",
        service_error_code="ResourceInUse",
        service_message=f"HumanTaskUi {UI_NAME} already exists",
        http_status_code=400,
    )
    stub.add_response("describe_human_task_ui", _task_ui(), {"HumanTaskUiName": UI_NAME})

    assert hook.ensure_task_ui(UI_NAME, TEMPLATE) == UI_ARN


def test_ensure_task_ui_raises_other_describe_errors(hook: HumanWorkflowHook, stub: Stubber) -> None:
    stub.add_client_error(
        "describe_human_task_ui",
        service_error_code="AccessDeniedException",
        service_message="not authorized to perform sagemaker:DescribeHumanTaskUi",
        http_status_code=403,
    )

    with pytest.raises(ClientError, match="AccessDeniedException"):
        hook.ensure_task_ui(UI_NAME, TEMPLATE)


def test_ensure_task_ui_raises_other_create_errors(hook: HumanWorkflowHook, stub: Stubber) -> None:
    _not_found_validation(stub, "describe_human_task_ui", {"HumanTaskUiName": UI_NAME}, "HumanTaskUi")
    stub.add_client_error(
        "create_human_task_ui", service_error_code="ResourceLimitExceeded", http_status_code=400
    )

    with pytest.raises(ClientError, match="ResourceLimitExceeded"):
        hook.ensure_task_ui(UI_NAME, TEMPLATE)


def test_ensure_task_ui_rejects_a_template_over_the_limit(hook: HumanWorkflowHook, stub: Stubber) -> None:
    too_long = "x" * (MAX_TEMPLATE_CHARS + 1)

    with pytest.raises(ValueError, match="128000"):
        hook.ensure_task_ui(UI_NAME, too_long)


def test_ensure_task_ui_accepts_a_template_at_the_limit(hook: HumanWorkflowHook, stub: Stubber) -> None:
    stub.add_response("describe_human_task_ui", _task_ui(), {"HumanTaskUiName": UI_NAME})

    assert MAX_TEMPLATE_CHARS == 128_000
    assert hook.ensure_task_ui(UI_NAME, "x" * MAX_TEMPLATE_CHARS) == UI_ARN


@pytest.mark.parametrize("name", ["", "Active-Learning-UI", "ui_name", "ui-", "a" * 64])
def test_ensure_task_ui_rejects_bad_names_before_any_call(
    hook: HumanWorkflowHook, stub: Stubber, name: str
) -> None:
    with pytest.raises(ValueError, match="invalid human task UI name"):
        hook.ensure_task_ui(name, TEMPLATE)


# ---------------------------------------------------------------------------------- flow definition
def test_describe_flow_definition_of_an_absent_one_is_none(hook: HumanWorkflowHook, stub: Stubber) -> None:
    stub.add_client_error(
        "describe_flow_definition",
        service_error_code="ResourceNotFound",
        service_message=f"Flow definition {FD_NAME} does not exist",
        http_status_code=400,
        expected_params={"FlowDefinitionName": FD_NAME},
    )

    assert hook.describe_flow_definition(FD_NAME) is None


def test_describe_flow_definition_raises_other_errors(hook: HumanWorkflowHook, stub: Stubber) -> None:
    stub.add_client_error(
        "describe_flow_definition", service_error_code="ThrottlingException", http_status_code=400
    )

    with pytest.raises(ClientError, match="ThrottlingException"):
        hook.describe_flow_definition(FD_NAME)


def test_ensure_flow_definition_adopts_an_existing_one(hook: HumanWorkflowHook, stub: Stubber) -> None:
    stub.add_response("describe_flow_definition", _flow_definition(), {"FlowDefinitionName": FD_NAME})

    described = hook.ensure_flow_definition(FD_NAME, REQUEST)

    assert described["FlowDefinitionArn"] == FD_ARN
    assert described["FlowDefinitionStatus"] == "Active"


def test_ensure_flow_definition_creates_an_absent_one(hook: HumanWorkflowHook, stub: Stubber) -> None:
    _not_found_validation(
        stub, "describe_flow_definition", {"FlowDefinitionName": FD_NAME}, "flow definition"
    )
    stub.add_response(
        "create_flow_definition", {"FlowDefinitionArn": FD_ARN}, {"FlowDefinitionName": FD_NAME, **REQUEST}
    )
    stub.add_response(
        "describe_flow_definition", _flow_definition("Initializing"), {"FlowDefinitionName": FD_NAME}
    )

    described = hook.ensure_flow_definition(FD_NAME, REQUEST)

    assert described["FlowDefinitionStatus"] == "Initializing"
    assert described["FlowDefinitionName"] == FD_NAME


def test_ensure_flow_definition_adopts_on_a_create_race(hook: HumanWorkflowHook, stub: Stubber) -> None:
    _not_found_validation(
        stub, "describe_flow_definition", {"FlowDefinitionName": FD_NAME}, "flow definition"
    )
    stub.add_client_error(
        "create_flow_definition",
        service_error_code="ResourceInUse",
        service_message=f"Flow definition {FD_NAME} already exists",
        http_status_code=400,
    )
    stub.add_response("describe_flow_definition", _flow_definition(), {"FlowDefinitionName": FD_NAME})

    assert hook.ensure_flow_definition(FD_NAME, REQUEST)["FlowDefinitionArn"] == FD_ARN


def test_ensure_flow_definition_raises_other_create_errors(hook: HumanWorkflowHook, stub: Stubber) -> None:
    _not_found_validation(
        stub, "describe_flow_definition", {"FlowDefinitionName": FD_NAME}, "flow definition"
    )
    stub.add_client_error(
        "create_flow_definition",
        service_error_code="ResourceLimitExceeded",
        service_message="too many flow definitions",
        http_status_code=400,
    )

    with pytest.raises(ClientError, match="ResourceLimitExceeded"):
        hook.ensure_flow_definition(FD_NAME, REQUEST)


def test_ensure_flow_definition_fails_when_the_created_one_cannot_be_described(
    hook: HumanWorkflowHook, stub: Stubber
) -> None:
    _not_found_validation(
        stub, "describe_flow_definition", {"FlowDefinitionName": FD_NAME}, "flow definition"
    )
    stub.add_response("create_flow_definition", {"FlowDefinitionArn": FD_ARN})
    _not_found_validation(
        stub, "describe_flow_definition", {"FlowDefinitionName": FD_NAME}, "flow definition"
    )

    with pytest.raises(RuntimeError, match="cannot be described"):
        hook.ensure_flow_definition(FD_NAME, REQUEST)


@pytest.mark.parametrize("name", ["", "FD", "fd--", "fd.name", "f" * 64])
def test_ensure_flow_definition_rejects_bad_names_before_any_call(
    hook: HumanWorkflowHook, stub: Stubber, name: str
) -> None:
    with pytest.raises(ValueError, match="invalid flow definition name"):
        hook.ensure_flow_definition(name, REQUEST)


# ---------------------------------------------------------------------------------- waiter
def _queue_statuses(stub: Stubber, *statuses: str) -> None:
    for status in statuses:
        extra = {"FailureReason": "Role cannot be assumed"} if status == "Failed" else {}
        stub.add_response(
            "describe_flow_definition", _flow_definition(status, **extra), {"FlowDefinitionName": FD_NAME}
        )


def test_flow_definition_active_waiter_comes_from_our_json(hook: HumanWorkflowHook) -> None:
    # botocore's sagemaker model has no such waiter: only our waiter_path can provide it.
    assert "FlowDefinitionActive" not in hook.conn.waiter_names
    waiter = hook.get_waiter("FlowDefinitionActive")

    assert waiter.name == "FlowDefinitionActive"
    assert waiter.config.operation == "DescribeFlowDefinition"
    assert {(a.expected, a.state) for a in waiter.config.acceptors} == {
        ("Active", "success"),
        ("Failed", "failure"),
        ("Deleting", "failure"),
        ("Initializing", "retry"),
    }


def test_flow_definition_active_waiter_waits_until_active(hook: HumanWorkflowHook, stub: Stubber) -> None:
    _queue_statuses(stub, "Initializing", "Initializing", "Active")

    hook.get_waiter("FlowDefinitionActive").wait(
        FlowDefinitionName=FD_NAME, WaiterConfig={"Delay": 0, "MaxAttempts": 5}
    )


@pytest.mark.parametrize("status", ["Failed", "Deleting"])
def test_flow_definition_active_waiter_stops_on_failure(
    hook: HumanWorkflowHook, stub: Stubber, status: str
) -> None:
    _queue_statuses(stub, "Initializing", status)

    with pytest.raises(WaiterError, match="terminal failure") as caught:
        hook.get_waiter("FlowDefinitionActive").wait(
            FlowDefinitionName=FD_NAME, WaiterConfig={"Delay": 0, "MaxAttempts": 5}
        )

    assert caught.value.last_response["FlowDefinitionStatus"] == status


def test_flow_definition_active_waiter_gives_up_after_max_attempts(
    hook: HumanWorkflowHook, stub: Stubber
) -> None:
    _queue_statuses(stub, "Initializing", "Initializing")

    with pytest.raises(WaiterError, match="Max attempts exceeded"):
        hook.get_waiter("FlowDefinitionActive").wait(
            FlowDefinitionName=FD_NAME, WaiterConfig={"Delay": 0, "MaxAttempts": 2}
        )
