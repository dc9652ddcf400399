"""Make sure the endpoint serves a model: create it from an initial artifact when absent."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils import validate_execute_complete_event
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import AirflowException, conf
from botocore.exceptions import ClientError

from active_learning.hooks.errors import error_message
from active_learning.hooks.models import ModelLineageHook, builtin_image_uri
from active_learning.links.console import EndpointLink
from active_learning.naming import endpoint_config_name, model_name
from active_learning.operators.base import ConfigurationError, LoopOperatorMixin
from active_learning.operators.waiting import ENDPOINT_WAITING_STATUSES, WaitOrDeferMixin
from active_learning.settings import LoopSettings
from active_learning.training_data import TAG_TRAINING_LINES


class DeployModelOperator(WaitOrDeferMixin, LoopOperatorMixin, AwsBaseOperator[ModelLineageHook]):
    """Make sure the endpoint serves a model and return what it serves.

    Absent endpoint: create the model, endpoint config and endpoint from the setting
    ``initial_model_data_url`` and wait until InService. Present and InService: change nothing.

    :param settings: the loop settings (see :class:`active_learning.settings.LoopSettings`).
    :param image_uri: the inference image; default: the built-in object-detection image of the region.
    :param deferrable: wait in the triggerer rather than in a worker slot.
    :param waiter_delay: seconds between status checks.
    :param waiter_max_attempts: status checks before failing.
    """

    aws_hook_class = ModelLineageHook
    template_fields: Sequence[str] = aws_template_fields("settings", "image_uri")
    template_fields_renderers = {"settings": "json"}
    operator_extra_links = (EndpointLink(),)

    def __init__(
        self,
        *,
        settings: Mapping[str, Any] | str,
        image_uri: str | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        waiter_delay: int = 30,
        waiter_max_attempts: int = 120,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.image_uri = image_uri
        self.deferrable = deferrable
        self.waiter_delay = waiter_delay
        self.waiter_max_attempts = waiter_max_attempts

    def execute(self, context: Any) -> dict[str, Any]:
        settings = self.loop_settings
        endpoint = settings.endpoint_name
        self.persist_link(EndpointLink, context, endpoint_name=endpoint)
        serving = self.hook.serving_model(endpoint)
        if serving is None:
            self._create(settings)
        elif serving.endpoint_status == "InService":
            self.log.info("Endpoint %s serves %s: nothing to do", endpoint, serving.model_name)
            return {**serving.to_dict(), "created": False}
        elif serving.endpoint_status not in ENDPOINT_WAITING_STATUSES:
            described = self.hook.describe_endpoint(endpoint)
            raise AirflowException(
                f"Endpoint {endpoint} is {serving.endpoint_status}: {described.get('FailureReason', '')}"
            )
        self.wait_for_endpoint(endpoint, created=serving is None)
        return self._served(endpoint, created=serving is None)

    def execute_complete(
        self, context: Any, event: dict[str, Any] | None = None, created: bool = True
    ) -> dict[str, Any]:
        validated = validate_execute_complete_event(event)
        if validated["status"] != "success":
            raise AirflowException(f"Endpoint did not become InService: {validated.get('message')}")
        return self._served(self.loop_settings.endpoint_name, created=created)

    def _create(self, settings: LoopSettings) -> None:
        model_data_url = settings.initial_model_data_url  # checked (S3 object, confined) by LoopSettings
        if model_data_url is None:
            raise ConfigurationError(
                f"setting initial_model_data_url is empty and endpoint {settings.endpoint_name} does not "
                "exist: set it to the s3:// URI of the first model.tar.gz"
            )
        image = self.image_uri or builtin_image_uri(self.hook.conn_region_name)
        model = self.hook.ensure_model(
            model_name(settings.resource_prefix, model_data_url),
            image,
            model_data_url,
            settings.role_arn,
            tags={TAG_TRAINING_LINES: "0"},
        )
        config = self.hook.ensure_endpoint_config(
            endpoint_config_name(
                settings.resource_prefix, model, {"instance": settings.inference_instance_type}
            ),
            model,
            settings.inference_instance_type,
        )
        self.log.info("Creating endpoint %s with config %s", settings.endpoint_name, config)
        try:
            self.hook.conn.create_endpoint(EndpointName=settings.endpoint_name, EndpointConfigName=config)
        except ClientError as err:  # a concurrent try created it: wait for it like for our own
            if "already exist" not in error_message(err):
                raise

    def _served(self, endpoint: str, created: bool) -> dict[str, Any]:
        serving = self.hook.serving_model(endpoint)
        if serving is None or serving.endpoint_status != "InService":
            raise AirflowException(f"Endpoint {endpoint} is not InService after waiting")
        return {**serving.to_dict(), "created": created}
