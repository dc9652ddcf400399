"""Hook for invoking SageMaker endpoints (``sagemaker-runtime``)."""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook


class SageMakerRuntimeHook(AwsBaseHook):
    """Invoke SageMaker endpoints through a boto3 client from the Airflow connection.

    Additional arguments (such as ``aws_conn_id`` or ``config``) are passed down to
    :class:`~airflow.providers.amazon.aws.hooks.base_aws.AwsBaseHook`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "sagemaker-runtime"
        super().__init__(*args, **kwargs)

    def invoke_endpoint(self, endpoint_name: str, body: bytes, content_type: str) -> bytes:
        """Send one payload to the endpoint and return the response body."""
        response = self.conn.invoke_endpoint(
            EndpointName=endpoint_name, Body=body, ContentType=content_type, Accept="application/json"
        )
        return response["Body"].read()
