"""CreateHumanReviewWorkflowOperator with the A2I backend, Stubber on its SageMaker client."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from unittest.mock import MagicMock

import pytest
from airflow.providers.common.compat.sdk import AirflowException
from airflow.sdk.exceptions import TaskDeferred
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from active_learning.hooks.human_workflow import HumanWorkflowHook
from active_learning.hooks.retries import client_config
from active_learning.links.review import ReviewLink
from active_learning.naming import A2I_NAME_PATTERN, flow_definition_name, task_ui_name
from active_learning.operators.human_workflow import DEFAULT_TEMPLATE, CreateHumanReviewWorkflowOperator
from active_learning.triggers.human_workflow import FlowDefinitionActiveTrigger

REGION = "us-east-1"
ACCOUNT = "123456789012"
SETTINGS = {
    "bucket": "my-bucket",
    "role_arn": f"arn:aws:iam::{ACCOUNT}:role/A2IRole",
    "workteam_arn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:workteam/private-crowd/reviewers",
    "endpoint_name": "object-detection",
}
TEMPLATE = DEFAULT_TEMPLATE.read_text(encoding="utf-8")
CREATED = datetime(2026, 11, 26, 1, 2, 3, tzinfo=UTC)


@pytest.fixture(scope="module")
def shared_hook() -> HumanWorkflowHook:
    """One SageMaker client for the module (building one costs about half a second)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_SESSION_TOKEN", "testing")
        env.delenv("AWS_PROFILE", raising=False)
        hook = HumanWorkflowHook(aws_conn_id=None, region_name=REGION)
        assert hook.conn is not None
    return hook


def _operator(
    shared_hook: HumanWorkflowHook | None = None, **kwargs: Any
) -> CreateHumanReviewWorkflowOperator:
    arguments: dict[str, Any] = {
        "task_id": "create_human_review_workflow",
        "settings": SETTINGS,
        "aws_conn_id": None,
        "region_name": REGION,
        "waiter_delay": 0,
        "waiter_max_attempts": 5,
    }
    op = CreateHumanReviewWorkflowOperator(**(arguments | kwargs))
    if shared_hook is not None:  # what op.aws_hook(HumanWorkflowHook) would build, built once
        op.__dict__["_aws_hooks"] = {HumanWorkflowHook: shared_hook}
    return op


@pytest.fixture
def op(shared_hook: HumanWorkflowHook) -> CreateHumanReviewWorkflowOperator:
    return _operator(shared_hook)


@pytest.fixture
def stub(shared_hook: HumanWorkflowHook) -> Iterator[Stubber]:
    with Stubber(shared_hook.conn) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def context() -> dict[str, Any]:
    return {"ti": MagicMock(name="ti")}


class Expected:
    """The names and the CreateFlowDefinition request the operator must produce for some settings."""

    def __init__(self, **settings: Any) -> None:
        values = {"task_count": 1, "task_time_limit_seconds": 3600, "task_availability_seconds": 864000}
        values |= settings
        self.ui_name = task_ui_name("active-learning", TEMPLATE)
        self.ui_arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:human-task-ui/{self.ui_name}"
        self.request = {
            "HumanLoopConfig": {
                "WorkteamArn": SETTINGS["workteam_arn"],
                "HumanTaskUiArn": self.ui_arn,
                "TaskTitle": "Review object detection boxes",
                "TaskDescription": "Correct the model's boxes around objects of the listed classes",
                "TaskCount": values["task_count"],
                "TaskAvailabilityLifetimeInSeconds": values["task_availability_seconds"],
                "TaskTimeLimitInSeconds": values["task_time_limit_seconds"],
            },
            "OutputConfig": {"S3OutputPath": "s3://my-bucket/active-learning/a2i-output/"},
            "RoleArn": SETTINGS["role_arn"],
        }
        self.fd_name = flow_definition_name("active-learning", self.ui_name, self.request)
        self.fd_arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:flow-definition/{self.fd_name}"

    def task_ui(self) -> dict[str, Any]:
        return {
            "HumanTaskUiArn": self.ui_arn,
            "HumanTaskUiName": self.ui_name,
            "HumanTaskUiStatus": "Active",
            "CreationTime": CREATED,
            "UiTemplate": {"Url": "https://example.s3.amazonaws.com/t.html", "ContentSha256": "cd" * 32},
        }

    def flow_definition(self, status: str, reason: str | None = None) -> dict[str, Any]:
        described = {
            "FlowDefinitionArn": self.fd_arn,
            "FlowDefinitionName": self.fd_name,
            "FlowDefinitionStatus": status,
            "CreationTime": CREATED,
            "HumanLoopConfig": self.request["HumanLoopConfig"],
            "OutputConfig": self.request["OutputConfig"],
            "RoleArn": self.request["RoleArn"],
        }
        if reason:
            described["FailureReason"] = reason
        return described

    def result(self) -> dict[str, str]:
        return {
            "review_backend": "a2i",
            "flow_definition_name": self.fd_name,
            "flow_definition_arn": self.fd_arn,
            "human_task_ui_arn": self.ui_arn,
        }

    # Stubbed calls --------------------------------------------------------------------------
    def ui_absent_then_created(self, stub: Stubber) -> None:
        stub.add_client_error(
            "describe_human_task_ui",
            service_error_code="ValidationException",
            service_message=f"Could not find HumanTaskUi {self.ui_arn}",
            http_status_code=400,
            expected_params={"HumanTaskUiName": self.ui_name},
        )
        stub.add_response(
            "create_human_task_ui",
            {"HumanTaskUiArn": self.ui_arn},
            {"HumanTaskUiName": self.ui_name, "UiTemplate": {"Content": TEMPLATE}},
        )

    def ui_exists(self, stub: Stubber) -> None:
        stub.add_response("describe_human_task_ui", self.task_ui(), {"HumanTaskUiName": self.ui_name})

    def fd_absent_then_created(self, stub: Stubber, status: str = "Active") -> None:
        stub.add_client_error(
            "describe_flow_definition",
            service_error_code="ResourceNotFound",
            service_message=f"Flow definition {self.fd_name} does not exist",
            http_status_code=400,
            expected_params={"FlowDefinitionName": self.fd_name},
        )
        stub.add_response(
            "create_flow_definition",
            {"FlowDefinitionArn": self.fd_arn},
            {"FlowDefinitionName": self.fd_name, **self.request},
        )
        self.fd_described(stub, status)

    def fd_described(self, stub: Stubber, status: str, reason: str | None = None) -> None:
        stub.add_response(
            "describe_flow_definition",
            self.flow_definition(status, reason),
            {"FlowDefinitionName": self.fd_name},
        )


# ---------------------------------------------------------------------------------- construction
def test_operator_builds_its_hook_from_its_arguments() -> None:
    op = _operator()

    hook = op.aws_hook(HumanWorkflowHook)
    assert isinstance(hook, HumanWorkflowHook)
    assert hook.region_name == REGION
    assert hook.aws_conn_id is None
    assert op.aws_hook(HumanWorkflowHook) is hook
    assert "settings" in op.template_fields
    assert "region_name" in op.template_fields
    assert isinstance(op.operator_extra_links[0], ReviewLink)


def test_names_are_valid_a2i_names() -> None:
    expected = Expected()

    assert A2I_NAME_PATTERN.match(expected.ui_name)
    assert A2I_NAME_PATTERN.match(expected.fd_name)
    assert len(expected.fd_name) <= 63


# ---------------------------------------------------------------------------------- execute
def test_execute_creates_the_task_ui_and_flow_definition_when_absent(
    op: CreateHumanReviewWorkflowOperator, stub: Stubber, context: dict[str, Any]
) -> None:
    expected = Expected()
    expected.ui_absent_then_created(stub)
    expected.fd_absent_then_created(stub)

    result = op.execute(context)

    assert result == expected.result()
    # the "Review" link: the flow definition in the A2I console
    context["ti"].xcom_push.assert_called_once_with(
        key="_link_ReviewLink",
        value=f"https://console.aws.amazon.com/a2i/home?region=us-east-1#/human-review-workflows/{expected.fd_name}",
    )


def test_execute_request_carries_the_settings(
    shared_hook: HumanWorkflowHook, stub: Stubber, context: dict[str, Any]
) -> None:
    settings = SETTINGS | {
        "task_count": 3,
        "task_time_limit_seconds": 600,
        "task_availability_seconds": 7200,
        "prefix": "active-learning",
    }
    op = _operator(shared_hook, settings=settings)
    expected = Expected(task_count=3, task_time_limit_seconds=600, task_availability_seconds=7200)
    expected.ui_exists(stub)
    expected.fd_absent_then_created(stub)  # Stubber checks the create request equals expected.request

    assert op.execute(context) == expected.result()
    config = expected.request["HumanLoopConfig"]
    assert config["TaskCount"] == 3
    assert config["TaskTimeLimitInSeconds"] == 600
    assert config["TaskAvailabilityLifetimeInSeconds"] == 7200
    assert (
        config["WorkteamArn"] == "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/reviewers"
    )
    assert expected.request["OutputConfig"] == {"S3OutputPath": "s3://my-bucket/active-learning/a2i-output/"}
    assert expected.request["RoleArn"] == "arn:aws:iam::123456789012:role/A2IRole"


def test_execute_on_retry_adopts_everything_and_creates_nothing(
    op: CreateHumanReviewWorkflowOperator, stub: Stubber, context: dict[str, Any]
) -> None:
    expected = Expected()
    expected.ui_exists(stub)
    expected.fd_described(stub, "Active")
    # Nothing else is queued: a create call would fail with an UnStubbedResponseError.

    assert op.execute(context) == expected.result()


def test_flow_definition_name_changes_with_the_task_count(
    shared_hook: HumanWorkflowHook, stub: Stubber, context: dict[str, Any]
) -> None:
    one, two = Expected(task_count=1), Expected(task_count=2)
    one.ui_exists(stub)
    one.fd_described(stub, "Active")
    two.ui_exists(stub)
    two.fd_absent_then_created(stub)

    first = _operator(shared_hook, settings=SETTINGS | {"task_count": 1}).execute(context)
    second = _operator(shared_hook, settings=SETTINGS | {"task_count": "2"}).execute(context)

    assert first["human_task_ui_arn"] == second["human_task_ui_arn"]  # same template, same task UI
    assert first["flow_definition_name"] != second["flow_definition_name"]
    assert second["flow_definition_name"] == two.fd_name


def test_task_ui_name_changes_with_the_template(
    shared_hook: HumanWorkflowHook, stub: Stubber, context: dict[str, Any], tmp_path: Any
) -> None:
    template = tmp_path / "other.liquid.html"
    template.write_text(TEMPLATE.replace("tight box", "snug box"), encoding="utf-8")
    op = _operator(shared_hook, template_path=template)
    ui_name = task_ui_name("active-learning", template.read_text(encoding="utf-8"))
    assert ui_name != Expected().ui_name
    stub.add_client_error(
        "describe_human_task_ui",
        service_error_code="AccessDeniedException",
        service_message="stop here",
        http_status_code=403,
        expected_params={"HumanTaskUiName": ui_name},
    )

    with pytest.raises(ClientError, match="stop here"):
        op.execute(context)


def test_execute_waits_for_an_initializing_flow_definition(
    op: CreateHumanReviewWorkflowOperator, stub: Stubber, context: dict[str, Any]
) -> None:
    expected = Expected()
    expected.ui_exists(stub)
    expected.fd_absent_then_created(stub, status="Initializing")
    expected.fd_described(stub, "Initializing")  # the waiter's polls
    expected.fd_described(stub, "Active")
    expected.fd_described(stub, "Active")  # the final describe

    assert op.execute(context) == expected.result()


def test_execute_defers_while_initializing_when_deferrable(
    shared_hook: HumanWorkflowHook, stub: Stubber, context: dict[str, Any]
) -> None:
    op = _operator(shared_hook, deferrable=True, waiter_delay=7, waiter_max_attempts=11)
    expected = Expected()
    expected.ui_exists(stub)
    expected.fd_described(stub, "Initializing")

    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)

    trigger = deferred.value.trigger
    assert isinstance(trigger, FlowDefinitionActiveTrigger)
    assert deferred.value.method_name == "execute_complete"
    classpath, kwargs = trigger.serialize()
    assert classpath == "active_learning.triggers.human_workflow.FlowDefinitionActiveTrigger"
    assert kwargs == {
        "flow_definition_name": expected.fd_name,
        "waiter_delay": 7,
        "waiter_max_attempts": 11,
        "aws_conn_id": None,
        "region_name": REGION,
        "botocore_config": client_config(),  # the package's retries, in the triggerer too
        "carried_requests": {"calls": 0, "retried_calls": 0, "retries": {}},  # none watched here
    }
    context["ti"].xcom_push.assert_called_once()  # the console link is there while it waits


def test_execute_does_not_defer_when_already_active(
    shared_hook: HumanWorkflowHook, stub: Stubber, context: dict[str, Any]
) -> None:
    op = _operator(shared_hook, deferrable=True)
    expected = Expected()
    expected.ui_exists(stub)
    expected.fd_described(stub, "Active")

    assert op.execute(context) == expected.result()


def test_execute_fails_on_a_failed_flow_definition_with_its_reason(
    op: CreateHumanReviewWorkflowOperator, stub: Stubber, context: dict[str, Any]
) -> None:
    expected = Expected()
    expected.ui_exists(stub)
    expected.fd_described(
        stub, "Failed", reason="Role arn:aws:iam::123456789012:role/A2IRole cannot be assumed"
    )

    with pytest.raises(AirflowException) as caught:
        op.execute(context)

    message = str(caught.value)
    assert f"Flow definition {expected.fd_name} is Failed" in message
    assert "Role arn:aws:iam::123456789012:role/A2IRole cannot be assumed" in message


def test_execute_fails_when_the_flow_definition_fails_while_waiting(
    op: CreateHumanReviewWorkflowOperator, stub: Stubber, context: dict[str, Any]
) -> None:
    expected = Expected()
    expected.ui_exists(stub)
    expected.fd_described(stub, "Initializing")
    expected.fd_described(stub, "Failed", reason="Workteam not found")  # the waiter's poll
    expected.fd_described(stub, "Failed", reason="Workteam not found")  # the final describe

    with pytest.raises(AirflowException, match="is Failed: Workteam not found"):
        op.execute(context)


def test_execute_fails_when_the_flow_definition_stays_initializing(
    shared_hook: HumanWorkflowHook, stub: Stubber, context: dict[str, Any]
) -> None:
    op = _operator(shared_hook, waiter_max_attempts=2)
    expected = Expected()
    expected.ui_exists(stub)
    for _ in range(4):  # ensure, two polls, the final describe
        expected.fd_described(stub, "Initializing")

    with pytest.raises(AirflowException, match="still Initializing after waiting"):
        op.execute(context)


def test_execute_rejects_invalid_settings_before_any_call(
    shared_hook: HumanWorkflowHook, stub: Stubber, context: dict[str, Any]
) -> None:
    op = _operator(shared_hook, settings=SETTINGS | {"task_count": 4})

    with pytest.raises(ValueError, match="task_count"):
        op.execute(context)


# ---------------------------------------------------------------------------------- execute_complete
def test_execute_complete_on_success_describes_and_returns(
    op: CreateHumanReviewWorkflowOperator, stub: Stubber, context: dict[str, Any]
) -> None:
    expected = Expected()
    expected.fd_described(stub, "Active")

    result = op.execute_complete(context, {"status": "success", "flow_definition_name": expected.fd_name})

    assert result == expected.result()


def test_execute_complete_on_error_fails_with_the_message(
    op: CreateHumanReviewWorkflowOperator, stub: Stubber, context: dict[str, Any]
) -> None:
    expected = Expected()  # no describe: an error event fails at once
    event = {
        "status": "error",
        "message": "Waiter error: max attempts reached",
        "flow_definition_name": expected.fd_name,
    }

    with pytest.raises(AirflowException) as caught:
        op.execute_complete(context, event)

    assert f"Flow definition {expected.fd_name} is not Active" in str(caught.value)
    assert "Waiter error: max attempts reached" in str(caught.value)


def test_execute_complete_without_an_event_fails(op: CreateHumanReviewWorkflowOperator) -> None:
    with pytest.raises(AirflowException, match="event is None"):
        op.execute_complete({}, None)
