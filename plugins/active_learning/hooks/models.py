"""SageMaker models, endpoint configs and endpoints: what an endpoint serves, and create-if-absent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook
from botocore.exceptions import ClientError

from active_learning.hooks.errors import is_not_found
from active_learning.naming import check_sagemaker_name


def builtin_image_uri(region: str) -> str:
    """The built-in object-detection image of the region (the SDK import costs ~2 s: never at parse)."""
    from sagemaker.core import image_uris

    return image_uris.retrieve("object-detection", region)


@dataclass(frozen=True)
class ServingModel:
    """What an endpoint serves: read from endpoint -> endpoint config -> model, never from local state."""

    endpoint_name: str
    endpoint_status: str
    endpoint_config_name: str
    model_name: str
    model_arn: str
    model_data_url: str
    image: str
    tags: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint_name": self.endpoint_name,
            "endpoint_status": self.endpoint_status,
            "endpoint_config_name": self.endpoint_config_name,
            "model_name": self.model_name,
            "model_data_url": self.model_data_url,
        }


class ModelLineageHook(SageMakerHook):
    """The provider's :class:`SageMakerHook` plus the lineage reads and idempotent creates the loop needs."""

    def describe_or_none(self, method: str, **kwargs: Any) -> dict[str, Any] | None:
        try:
            return getattr(self.conn, method)(**kwargs)
        except ClientError as err:
            if is_not_found(err):
                return None
            raise

    def tags_of(self, arn: str) -> dict[str, str]:
        paginator = self.conn.get_paginator("list_tags")
        return {
            tag["Key"]: tag["Value"]
            for page in paginator.paginate(ResourceArn=arn)
            for tag in page.get("Tags", [])
        }

    @staticmethod
    def base_model_of(job: dict[str, Any]) -> str | None:
        """The artifact a training job started from (its ``model`` channel), ``None`` when it had none."""
        for channel in job.get("InputDataConfig", []):
            if channel["ChannelName"] == "model":
                return channel["DataSource"]["S3DataSource"]["S3Uri"]
        return None

    def serving_model(self, endpoint_name: str) -> ServingModel | None:
        """The model behind the endpoint's current config, or ``None`` when there is no endpoint."""
        endpoint = self.describe_or_none("describe_endpoint", EndpointName=endpoint_name)
        if endpoint is None:
            return None
        config = self.conn.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
        model_name = config["ProductionVariants"][0]["ModelName"]
        model = self.conn.describe_model(ModelName=model_name)
        container = model.get("PrimaryContainer") or model["Containers"][0]
        return ServingModel(
            endpoint_name=endpoint_name,
            endpoint_status=endpoint["EndpointStatus"],
            endpoint_config_name=endpoint["EndpointConfigName"],
            model_name=model_name,
            model_arn=model["ModelArn"],
            model_data_url=container.get("ModelDataUrl", ""),
            image=container["Image"],
            tags=self.tags_of(model["ModelArn"]),
        )

    def ensure_model(
        self, name: str, image: str, model_data_url: str, role_arn: str, tags: dict[str, str]
    ) -> str:
        """Create the model when absent; returns its name."""
        check_sagemaker_name("model", name)
        if self.describe_or_none("describe_model", ModelName=name) is None:
            self.log.info("Creating model %s from %s", name, model_data_url)
            self.create_model(
                {
                    "ModelName": name,
                    "PrimaryContainer": {"Image": image, "ModelDataUrl": model_data_url},
                    "ExecutionRoleArn": role_arn,
                    "Tags": [{"Key": key, "Value": value} for key, value in sorted(tags.items())],
                }
            )
        return name

    def ensure_endpoint_config(self, name: str, model_name: str, instance_type: str) -> str:
        """Create a single-variant endpoint config when absent; returns its name."""
        check_sagemaker_name("endpoint config", name)
        if self.describe_or_none("describe_endpoint_config", EndpointConfigName=name) is None:
            self.log.info("Creating endpoint config %s for model %s", name, model_name)
            self.create_endpoint_config(
                {
                    "EndpointConfigName": name,
                    "ProductionVariants": [
                        {
                            "VariantName": "AllTraffic",
                            "ModelName": model_name,
                            "InitialInstanceCount": 1,
                            "InstanceType": instance_type,
                            "InitialVariantWeight": 1.0,
                        }
                    ],
                }
            )
        return name

    def prune(
        self, name_prefix: str, keep: int, in_use_config: str, previous_config: str | None = None
    ) -> list[str]:
        """Delete our endpoint configs and models past the newest ``keep``.

        The config in use, the one it replaced (the way back), and their models are always kept,
        however many newer configs never served (rolled back). Returns the deleted names.
        """
        deleted: list[str] = []
        protected: set[str] = set()
        for config in filter(None, (in_use_config, previous_config)):
            described = self.describe_or_none("describe_endpoint_config", EndpointConfigName=config)
            if described is not None:
                protected |= {config, described["ProductionVariants"][0]["ModelName"]}
        for kind, list_call, key, name_key, delete in (
            (
                "config",
                "list_endpoint_configs",
                "EndpointConfigs",
                "EndpointConfigName",
                "delete_endpoint_config",
            ),
            ("model", "list_models", "Models", "ModelName", "delete_model"),
        ):
            stem = f"{name_prefix}-{kind}-"
            paginator = self.conn.get_paginator(list_call)
            found = [
                item
                for page in paginator.paginate(NameContains=stem)
                for item in page[key]
                if item[name_key].startswith(stem)
            ]
            found.sort(key=lambda item: item["CreationTime"], reverse=True)
            for item in found[keep:]:
                name = item[name_key]
                if name in protected:
                    continue
                self.log.info("Deleting %s %s (retention keeps %d)", kind, name, keep)
                getattr(self.conn, delete)(**{name_key: name})
                deleted.append(name)
        return deleted
