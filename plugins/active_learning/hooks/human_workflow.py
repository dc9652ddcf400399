"""Hook for A2I's control plane on the SageMaker API: worker task UIs and flow definitions."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from botocore.exceptions import ClientError

from active_learning.hooks.errors import error_code, is_not_found
from active_learning.naming import check_a2i_name

WAITERS = Path(__file__).parents[1] / "waiters" / "human_workflow.json"
MAX_TEMPLATE_CHARS = 128_000


class HumanWorkflowHook(AwsBaseHook):
    """Create-if-absent human task UIs and flow definitions; wait for a flow definition to be Active.

    Uses a ``sagemaker`` client; the ``FlowDefinitionActive`` waiter comes from this package's
    ``waiters/human_workflow.json``. Additional arguments are passed down to ``AwsBaseHook``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "sagemaker"
        super().__init__(*args, **kwargs)

    @cached_property
    def waiter_path(self) -> Path:
        return WAITERS

    def ensure_task_ui(self, name: str, template: str) -> str:
        """The ARN of the task UI ``name``, created from ``template`` when absent."""
        check_a2i_name("human task UI", name)
        if len(template) > MAX_TEMPLATE_CHARS:
            raise ValueError(f"task template has {len(template)} characters; A2I allows {MAX_TEMPLATE_CHARS}")
        try:
            return self.conn.describe_human_task_ui(HumanTaskUiName=name)["HumanTaskUiArn"]
        except ClientError as err:
            if not is_not_found(err):
                raise
        self.log.info("Creating human task UI %s", name)
        try:
            return self.conn.create_human_task_ui(HumanTaskUiName=name, UiTemplate={"Content": template})[
                "HumanTaskUiArn"
            ]
        except ClientError as err:  # another try created it meanwhile: adopt it
            if error_code(err) != "ResourceInUse":
                raise
            return self.conn.describe_human_task_ui(HumanTaskUiName=name)["HumanTaskUiArn"]

    def describe_flow_definition(self, name: str) -> dict[str, Any] | None:
        try:
            return self.conn.describe_flow_definition(FlowDefinitionName=name)
        except ClientError as err:
            if is_not_found(err):
                return None
            raise

    def ensure_flow_definition(self, name: str, request: dict[str, Any]) -> dict[str, Any]:
        """Describe the flow definition ``name``, creating it from ``request`` when absent."""
        check_a2i_name("flow definition", name)
        existing = self.describe_flow_definition(name)
        if existing is not None:
            return existing
        self.log.info("Creating flow definition %s", name)
        try:
            self.conn.create_flow_definition(FlowDefinitionName=name, **request)
        except ClientError as err:
            if error_code(err) != "ResourceInUse":
                raise
        described = self.describe_flow_definition(name)
        if described is None:
            raise RuntimeError(f"flow definition {name} was created but cannot be described")
        return described
