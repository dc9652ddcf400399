"""Trigger waiting, in the triggerer, for a flow definition to become Active."""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.triggers.base import AwsBaseWaiterTrigger

from active_learning.hooks.human_workflow import HumanWorkflowHook
from active_learning.triggers.aws_waits import CountedWaiterRun


class FlowDefinitionActiveTrigger(CountedWaiterRun, AwsBaseWaiterTrigger):
    """Poll ``DescribeFlowDefinition`` until the status is Active (or Failed), the first time one
    ``waiter_delay`` after the deferral (see :class:`~active_learning.triggers.aws_waits.CountedWaiterRun`).

    :param flow_definition_name: the flow definition to wait for.
    :param waiter_delay: seconds between polls.
    :param waiter_max_attempts: polls before giving up.
    :param aws_conn_id: the Airflow connection for AWS.
    :param carried_requests: the AWS requests the task made before it deferred.
    """

    aws_hook_class = HumanWorkflowHook

    def __init__(
        self,
        *,
        flow_definition_name: str,
        waiter_delay: int = 10,
        waiter_max_attempts: int = 60,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict | None = None,
        carried_requests: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            serialized_fields={"flow_definition_name": flow_definition_name},
            waiter_name="FlowDefinitionActive",
            waiter_args={"FlowDefinitionName": flow_definition_name},
            failure_message=f"Flow definition {flow_definition_name} did not become Active",
            status_message="Flow definition status",
            status_queries=["FlowDefinitionStatus", "FailureReason"],
            return_key="flow_definition_name",
            return_value=flow_definition_name,
            waiter_delay=waiter_delay,
            waiter_max_attempts=waiter_max_attempts,
            aws_conn_id=aws_conn_id,
            region_name=region_name,
            verify=verify,
            botocore_config=botocore_config,
        )
        self.carry(carried_requests)
