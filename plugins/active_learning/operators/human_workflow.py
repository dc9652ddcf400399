"""Create the human review workflow: the worker task UI and the flow definition, idempotently."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils import validate_execute_complete_event
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import AirflowException, conf

from active_learning.hooks.human_workflow import HumanWorkflowHook
from active_learning.links.console import FlowDefinitionLink
from active_learning.naming import flow_definition_name, task_ui_name
from active_learning.operators.base import LoopOperatorMixin
from active_learning.operators.waiting import WaitOrDeferMixin
from active_learning.review_backends.label_studio import LabelStudioConnectionMixin
from active_learning.triggers.human_workflow import FlowDefinitionActiveTrigger

DEFAULT_TEMPLATE = Path(__file__).parents[3] / "include" / "templates" / "bounding-box.liquid.html"


class CreateHumanReviewWorkflowOperator(
    LabelStudioConnectionMixin, WaitOrDeferMixin, LoopOperatorMixin, AwsBaseOperator[HumanWorkflowHook]
):
    """Make sure the worker task UI and the flow definition exist and the flow definition is Active.

    When the run's ``review_backend`` is ``label_studio``, makes sure the Label Studio project
    exists instead (connection ``label_studio_conn_id``).

    Names come from a hash of the template and of the flow definition's settings, so a retry adopts
    what the first try created and a changed setting makes a new flow definition (they are immutable).

    :param settings: the loop settings (see :class:`active_learning.settings.LoopSettings`).
    :param template_path: the worker task template (Liquid HTML).
    :param task_title: the task's title as workers see it.
    :param task_description: the task's description as workers see it.
    :param deferrable: wait in the triggerer rather than in a worker slot.
    :param waiter_delay: seconds between status checks.
    :param waiter_max_attempts: status checks before failing.
    """

    aws_hook_class = HumanWorkflowHook
    template_fields: Sequence[str] = aws_template_fields("settings", "task_title", "task_description")
    operator_extra_links = (FlowDefinitionLink(),)
    ui_color = "#f3e5ab"

    def __init__(
        self,
        *,
        settings: Mapping[str, Any] | str,
        template_path: str | Path = DEFAULT_TEMPLATE,
        task_title: str = "Review object detection boxes",
        task_description: str = "Correct the model's boxes around objects of the listed classes",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        waiter_delay: int = 10,
        waiter_max_attempts: int = 60,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.template_path = str(template_path)
        self.task_title = task_title
        self.task_description = task_description
        self.deferrable = deferrable
        self.waiter_delay = waiter_delay
        self.waiter_max_attempts = waiter_max_attempts

    def execute(self, context: Any) -> dict[str, Any]:
        settings = self.loop_settings
        if settings.review_backend == "label_studio":
            return self.label_studio(settings).set_up()
        template = Path(self.template_path).read_text(encoding="utf-8")
        ui_name = task_ui_name(settings.resource_prefix, template)
        ui_arn = self.hook.ensure_task_ui(ui_name, template)
        human_loop_config = {
            "WorkteamArn": settings.workteam_arn,
            "HumanTaskUiArn": ui_arn,
            "TaskTitle": self.task_title,
            "TaskDescription": self.task_description,
            "TaskCount": settings.task_count,
            "TaskAvailabilityLifetimeInSeconds": settings.task_availability_seconds,
            "TaskTimeLimitInSeconds": settings.task_time_limit_seconds,
        }
        request = {
            "HumanLoopConfig": human_loop_config,
            "OutputConfig": {"S3OutputPath": settings.a2i_output_uri},
            "RoleArn": settings.role_arn,
        }
        name = flow_definition_name(settings.resource_prefix, ui_name, request)
        described = self.hook.ensure_flow_definition(name, request)
        self.persist_link(FlowDefinitionLink, context, flow_definition_name=name)
        status = described["FlowDefinitionStatus"]
        if status == "Initializing":
            err = self.wait_or_defer(
                FlowDefinitionActiveTrigger,
                {"flow_definition_name": name},
                "FlowDefinitionActive",
                {"FlowDefinitionName": name},
            )
            if err is not None:
                self.log.warning("Flow definition %s: %s", name, err)
            described = self.hook.describe_flow_definition(name) or described
        return self._result(described)

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, str]:
        validated = validate_execute_complete_event(event)
        name = validated["flow_definition_name"]
        if validated["status"] != "success":
            raise AirflowException(f"Flow definition {name} is not Active: {validated.get('message')}")
        described = self.hook.describe_flow_definition(name)
        if described is None:
            raise AirflowException(f"Flow definition {name} disappeared while waiting for it")
        return self._result(described)

    @staticmethod
    def _result(described: dict[str, Any]) -> dict[str, str]:
        status = described["FlowDefinitionStatus"]
        if status == "Initializing":
            raise AirflowException(
                f"Flow definition {described['FlowDefinitionName']} is still Initializing after waiting; "
                "retry the task to wait longer"
            )
        if status != "Active":
            raise AirflowException(
                f"Flow definition {described['FlowDefinitionName']} is {status}: "
                f"{described.get('FailureReason', 'no reason given')}. Delete it or change a setting "
                "(the name derives from the template and settings) and retry."
            )
        return {
            "flow_definition_name": described["FlowDefinitionName"],
            "flow_definition_arn": described["FlowDefinitionArn"],
            "human_task_ui_arn": described["HumanLoopConfig"]["HumanTaskUiArn"],
        }
