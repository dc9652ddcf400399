"""Hook for the Amazon A2I runtime (``sagemaker-a2i-runtime``): human loops."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from botocore.exceptions import ClientError

from active_learning.hooks.errors import error_code
from active_learning.naming import check_a2i_name

LIST_PAGE_SIZE = 100  # the API's maximum: 1,000 loops cost 10 calls


def list_human_loops_request(
    flow_definition_arn: str, created_after: datetime, created_before: datetime | None = None
) -> dict[str, Any]:
    """Paginator arguments for one run's loops: its flow definition and creation-time window, 100 a page."""
    request: dict[str, Any] = {
        "FlowDefinitionArn": flow_definition_arn,
        "CreationTimeAfter": created_after,
        "SortOrder": "Ascending",
        "PaginationConfig": {"PageSize": LIST_PAGE_SIZE},
    }
    if created_before is not None:
        request["CreationTimeBefore"] = created_before
    return request


class HumanLoopConflictError(RuntimeError):
    """A loop of the same name exists under another flow definition."""


class A2IRuntimeHook(AwsBaseHook):
    """Interact with the Amazon A2I runtime through a boto3 client from the Airflow connection.

    Additional arguments (such as ``aws_conn_id``) may be specified and are passed down to the
    underlying :class:`~airflow.providers.amazon.aws.hooks.base_aws.AwsBaseHook`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "sagemaker-a2i-runtime"
        super().__init__(*args, **kwargs)

    def start_human_loop(self, name: str, flow_definition_arn: str, input_content: str) -> dict[str, Any]:
        """Start a loop, or adopt the loop of that name a previous try started.

        :return: ``{"arn", "started": True}`` when started now; ``{"arn", "started": False,
            "creation_time"}`` when adopted.
        :raises ValueError: when the name breaks A2I's name rules (botocore does not check them).
        :raises HumanLoopConflictError: when the name is taken under another flow definition.
        """
        check_a2i_name("human loop", name)
        try:
            response = self.conn.start_human_loop(
                HumanLoopName=name,
                FlowDefinitionArn=flow_definition_arn,
                HumanLoopInput={"InputContent": input_content},
            )
            return {"arn": response["HumanLoopArn"], "started": True}
        except ClientError as err:
            if error_code(err) != "ConflictException":
                raise
        existing = self.conn.describe_human_loop(HumanLoopName=name)
        if existing["FlowDefinitionArn"] != flow_definition_arn:
            raise HumanLoopConflictError(
                f"human loop {name!r} already exists under flow definition {existing['FlowDefinitionArn']}"
            )
        return {"arn": existing["HumanLoopArn"], "started": False, "creation_time": existing["CreationTime"]}

    def stop_human_loop(self, name: str) -> bool:
        """Stop a loop; ``False`` when it is gone or already finished (nothing to stop)."""
        try:
            self.conn.stop_human_loop(HumanLoopName=name)
        except ClientError as err:
            if error_code(err) in ("ResourceNotFoundException", "ValidationException"):
                return False
            raise
        return True

    def describe_human_loop(self, name: str) -> dict[str, Any]:
        return self.conn.describe_human_loop(HumanLoopName=name)

    def list_human_loops(
        self, flow_definition_arn: str, created_after: datetime, created_before: datetime | None = None
    ) -> Iterator[dict[str, Any]]:
        """All loop summaries of a flow definition created in a time window, 100 per call."""
        paginator = self.conn.get_paginator("list_human_loops")
        for page in paginator.paginate(
            **list_human_loops_request(flow_definition_arn, created_after, created_before)
        ):
            yield from page["HumanLoopSummaries"]
