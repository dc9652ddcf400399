"""AWS console links shown on the tasks that create AWS resources."""

from __future__ import annotations

from airflow.providers.amazon.aws.links.base_aws import BASE_AWS_CONSOLE_LINK, BaseAwsLink

_SAGEMAKER = BASE_AWS_CONSOLE_LINK + "/sagemaker/home?region={region_name}#"


class EndpointLink(BaseAwsLink):
    """The SageMaker endpoint."""

    name = "SageMaker endpoint"
    key = "sagemaker_endpoint"
    format_str = _SAGEMAKER + "/endpoints/{endpoint_name}"


class TrainingJobLink(BaseAwsLink):
    """The SageMaker training job."""

    name = "Training job"
    key = "sagemaker_training_job"
    format_str = _SAGEMAKER + "/jobs/{job_name}"
