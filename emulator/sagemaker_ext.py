"""SageMaker operations moto lacks or only fakes: task UIs, flow definitions, UpdateEndpoint, training."""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from emulator.protocol import SAGEMAKER_NAME, AwsError, arn, check_name, epoch, now, require

MAX_TEMPLATE_CHARS = 128_000


@dataclass
class TrainingJob:
    name: str
    region: str
    request: dict[str, Any]
    created: datetime = field(default_factory=now)
    status: str = "InProgress"
    secondary: str = "Starting"
    failure: str | None = None
    started: datetime | None = None
    ended: datetime | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    stop_requested: threading.Event = field(default_factory=threading.Event)

    @property
    def arn(self) -> str:
        return arn(self.region, "training-job", self.name.lower())

    @property
    def artifact(self) -> str:
        base = self.request["OutputDataConfig"]["S3OutputPath"].rstrip("/")
        return f"{base}/{self.name}/output/model.tar.gz"

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "TrainingJobName": self.name,
            "TrainingJobArn": self.arn,
            # a required member: where the artifact is (or will be) written, as moto answers too
            "ModelArtifacts": {"S3ModelArtifacts": self.artifact},
            "TrainingJobStatus": self.status,
            "SecondaryStatus": self.secondary,
            "HyperParameters": self.request.get("HyperParameters", {}),
            "AlgorithmSpecification": self.request["AlgorithmSpecification"],
            "RoleArn": self.request["RoleArn"],
            "InputDataConfig": self.request.get("InputDataConfig", []),
            "OutputDataConfig": self.request["OutputDataConfig"],
            "ResourceConfig": self.request["ResourceConfig"],
            "StoppingCondition": self.request["StoppingCondition"],
            "CreationTime": epoch(self.created),
            "LastModifiedTime": epoch(self.ended or self.started or self.created),
            "FinalMetricDataList": self.metrics,
        }
        if self.started:
            described["TrainingStartTime"] = epoch(self.started)
        if self.ended:
            described["TrainingEndTime"] = epoch(self.ended)
            # whole seconds, at least 1 (the API's minimum), as AWS bills a started second
            described["TrainingTimeInSeconds"] = max(
                1, math.ceil((self.ended - (self.started or self.created)).total_seconds())
            )
            described["BillableTimeInSeconds"] = described["TrainingTimeInSeconds"]
        if self.failure:
            described["FailureReason"] = self.failure
        return described


class SageMakerExtensions:
    """Answers ``SageMaker.<Operation>`` JSON requests for the operations listed in ``handlers``.

    :param timings: the simulated state changes' delays (``activation_delay``, ``update_delay``,
        ``training_start_delay``).
    :param later: runs a state change after a delay, in the background.
    :param moto_sagemaker: moto's SageMaker backend of a region (endpoints, configs, models).
    :param model_data_url: a model's artifact URI, by region and model name.
    :param load_model: the local model of an artifact (an update rolls back when it does not load).
    :param trainer: trains a job for real; returns its validation mAP.
    :param task_ui_url: where a task UI's template is served, by name.
    """

    def __init__(
        self,
        timings: Any,
        later: Callable[..., None],
        moto_sagemaker: Callable[[str], Any],
        model_data_url: Callable[[str, str], str],
        load_model: Callable[[str, str], Any],
        trainer: Callable[[TrainingJob], float],
        task_ui_url: Callable[[str], str],
    ) -> None:
        self.timings = timings
        self.later = later
        self.moto_sagemaker = moto_sagemaker
        self.model_data_url = model_data_url
        self.load_model = load_model
        self.trainer = trainer
        self.task_ui_url = task_ui_url
        self.lock = threading.Lock()
        self.task_uis: dict[str, dict[str, Any]] = {}
        self.flow_definitions: dict[str, dict[str, Any]] = {}
        self.training_jobs: dict[str, TrainingJob] = {}
        self.tags: dict[str, list[dict[str, str]]] = {}
        # endpoint updates still to roll back as a CloudWatch alarm would (a fault, on purpose)
        self.alarmed_updates = 0
        # every update that landed, in order: (endpoint, artifact of the model replaced, the new one's)
        self.landed_updates: list[tuple[str, str, str]] = []
        self.handlers: dict[str, Callable[[dict[str, Any], str], dict[str, Any]]] = {
            "CreateHumanTaskUi": self.create_human_task_ui,
            "DescribeHumanTaskUi": self.describe_human_task_ui,
            "CreateFlowDefinition": self.create_flow_definition,
            "DescribeFlowDefinition": self.describe_flow_definition,
            "DeleteFlowDefinition": self.delete_flow_definition,
            "UpdateEndpoint": self.update_endpoint,
            "CreateTrainingJob": self.create_training_job,
            "DescribeTrainingJob": self.describe_training_job,
            "ListTrainingJobs": self.list_training_jobs,
            "StopTrainingJob": self.stop_training_job,
        }

    def handles(self, operation: str, body_peek: Callable[[], dict[str, Any]]) -> bool:
        if operation in self.handlers:
            return True
        # tags of the resources kept here (training jobs, flow definitions, task UIs)
        if operation in ("ListTags", "AddTags"):
            resource = body_peek().get("ResourceArn", "")
            return any(
                f":{kind}/" in resource for kind in ("training-job", "flow-definition", "human-task-ui")
            )
        return False

    def handle(self, operation: str, body: dict[str, Any], region: str) -> dict[str, Any]:
        if operation == "ListTags":
            return {"Tags": self.tags.get(body["ResourceArn"], [])}
        if operation == "AddTags":
            self._add_tags(body["ResourceArn"], body.get("Tags", []))
            return {"Tags": body.get("Tags", [])}
        return self.handlers[operation](body, region)

    def _add_tags(self, resource: str, tags: list[dict[str, str]]) -> None:
        current = {tag["Key"]: tag["Value"] for tag in self.tags.get(resource, [])}
        current.update({tag["Key"]: tag["Value"] for tag in tags})
        self.tags[resource] = [{"Key": k, "Value": v} for k, v in current.items()]

    # Human task UIs ----------------------------------------------------------------------------
    def create_human_task_ui(self, body: dict[str, Any], region: str) -> dict[str, Any]:
        name = check_name(body.get("HumanTaskUiName"), "humanTaskUiName")
        content = (body.get("UiTemplate") or {}).get("Content", "")
        if not 1 <= len(content) <= MAX_TEMPLATE_CHARS:
            raise AwsError(
                "ValidationException", f"UiTemplate.Content must have 1-{MAX_TEMPLATE_CHARS} characters"
            )
        with self.lock:
            if name in self.task_uis:
                raise AwsError("ResourceInUse", f"Human task UI {name} already exists")
            ui_arn = arn(region, "human-task-ui", name)
            self.task_uis[name] = {"arn": ui_arn, "content": content, "created": now()}
        self._add_tags(ui_arn, body.get("Tags", []))
        return {"HumanTaskUiArn": ui_arn}

    def describe_human_task_ui(self, body: dict[str, Any], region: str) -> dict[str, Any]:
        name = body.get("HumanTaskUiName", "")
        ui = self.task_uis.get(name)
        if ui is None:
            raise AwsError("ResourceNotFound", f"Human task UI {name} does not exist")
        return {
            "HumanTaskUiArn": ui["arn"],
            "HumanTaskUiName": name,
            "HumanTaskUiStatus": "Active",
            "CreationTime": epoch(ui["created"]),
            "UiTemplate": {
                "Url": self.task_ui_url(name),
                "ContentSha256": hashlib.sha256(ui["content"].encode()).hexdigest(),
            },
        }

    # Flow definitions ----------------------------------------------------------------------------
    def create_flow_definition(self, body: dict[str, Any], region: str) -> dict[str, Any]:
        name = check_name(body.get("FlowDefinitionName"), "flowDefinitionName")
        require(body, "OutputConfig", "RoleArn", "HumanLoopConfig")
        config = body["HumanLoopConfig"]
        require(config, "WorkteamArn", "HumanTaskUiArn", "TaskTitle", "TaskDescription", "TaskCount")
        if not 1 <= int(config["TaskCount"]) <= 3:
            raise AwsError("ValidationException", "TaskCount must be between 1 and 3")
        if int(config.get("TaskTimeLimitInSeconds", 3600)) < 30:
            raise AwsError("ValidationException", "TaskTimeLimitInSeconds must be at least 30")
        ui_name = config["HumanTaskUiArn"].rsplit("/", 1)[-1]
        if ui_name not in self.task_uis:
            raise AwsError("ValidationException", f"Human task UI {config['HumanTaskUiArn']} does not exist")
        with self.lock:
            if name in self.flow_definitions:
                raise AwsError("ResourceInUse", f"Flow definition {name} already exists")
            flow_arn = arn(region, "flow-definition", name)
            self.flow_definitions[name] = {
                "FlowDefinitionArn": flow_arn,
                "FlowDefinitionName": name,
                "FlowDefinitionStatus": "Initializing",
                "CreationTime": now(),
                "HumanLoopConfig": config,
                "OutputConfig": body["OutputConfig"],
                "RoleArn": body["RoleArn"],
            }
        self._add_tags(flow_arn, body.get("Tags", []))
        self.later(self.timings.activation_delay, self._activate, name)
        return {"FlowDefinitionArn": flow_arn}

    def _activate(self, name: str) -> None:
        with self.lock:
            if name in self.flow_definitions:
                self.flow_definitions[name]["FlowDefinitionStatus"] = "Active"

    def flow_definition_by_arn(self, flow_arn: str) -> dict[str, Any] | None:
        return self.flow_definitions.get(flow_arn.rsplit("/", 1)[-1])

    def describe_flow_definition(self, body: dict[str, Any], region: str) -> dict[str, Any]:
        name = body.get("FlowDefinitionName", "")
        flow = self.flow_definitions.get(name)
        if flow is None:
            raise AwsError("ResourceNotFound", f"Flow definition {name} does not exist")
        return {**flow, "CreationTime": epoch(flow["CreationTime"])}

    def delete_flow_definition(self, body: dict[str, Any], region: str) -> dict[str, Any]:
        name = body.get("FlowDefinitionName", "")
        with self.lock:
            if self.flow_definitions.pop(name, None) is None:
                raise AwsError("ResourceNotFound", f"Flow definition {name} does not exist")
        return {}

    # Endpoints -----------------------------------------------------------------------------------
    def update_endpoint(self, body: dict[str, Any], region: str) -> dict[str, Any]:
        """Updating -> InService; the old config serves until the new one is InService."""
        require(body, "EndpointName", "EndpointConfigName")
        backend = self.moto_sagemaker(region)
        endpoint = backend.endpoints.get(body["EndpointName"])
        if endpoint is None:
            raise AwsError("ValidationException", f'Could not find endpoint "{body["EndpointName"]}".')
        config = backend.endpoint_configs.get(body["EndpointConfigName"])
        if config is None:
            raise AwsError(
                "ValidationException",
                f'Could not find endpoint configuration "{body["EndpointConfigName"]}".',
            )
        if endpoint.endpoint_status != "InService":
            raise AwsError(
                "ValidationException",
                f'Cannot update in-progress endpoint "{endpoint.arn}" (status {endpoint.endpoint_status}).',
            )
        endpoint.endpoint_status = "Updating"
        endpoint.failure_reason = None
        self.later(self.timings.update_delay, self._finish_update, region, endpoint, config)
        return {"EndpointArn": endpoint.arn}

    def _finish_update(self, region: str, endpoint: Any, config: Any) -> None:
        model_name = config.production_variants[0]["ModelName"]
        reason = None
        try:  # a model whose artifact does not load rolls the update back, as a failed health check would
            self.load_model(self.model_data_url(region, model_name), region)
        except Exception as err:
            reason = f"the new model did not load ({err})"
        if reason is None and self.alarmed_updates:
            self.alarmed_updates -= 1
            reason = "an alarm of the deployment's AutoRollbackConfiguration went into ALARM state"
        if reason is not None:
            endpoint.endpoint_status = "RollingBack"
            endpoint.failure_reason = f"Update rolled back: {reason}"
            self.later(self.timings.update_delay, self._rolled_back, endpoint)
            return
        replaced = self.moto_sagemaker(region).endpoint_configs[endpoint.endpoint_config_name]
        self.landed_updates.append(
            (
                endpoint.endpoint_name,
                self.model_data_url(region, replaced.production_variants[0]["ModelName"]),
                self.model_data_url(region, model_name),
            )
        )
        endpoint.endpoint_config_name = config.endpoint_config_name
        endpoint.production_variants = endpoint._process_production_variants(config.production_variants)
        endpoint.last_modified_time = now()
        endpoint.endpoint_status = "InService"

    @staticmethod
    def _rolled_back(endpoint: Any) -> None:
        endpoint.endpoint_status = "InService"  # on the old config, with the FailureReason kept

    # Training jobs -------------------------------------------------------------------------------
    def create_training_job(self, body: dict[str, Any], region: str) -> dict[str, Any]:
        name = check_name(body.get("TrainingJobName"), "trainingJobName", SAGEMAKER_NAME)
        require(
            body,
            "AlgorithmSpecification",
            "RoleArn",
            "OutputDataConfig",
            "ResourceConfig",
            "StoppingCondition",
        )
        for value in (body.get("HyperParameters") or {}).values():
            if not isinstance(value, str):
                raise AwsError("ValidationException", "HyperParameters values must be strings")
        with self.lock:
            if name in self.training_jobs:
                raise AwsError(
                    "ResourceInUse",
                    "Training job names must be unique within an AWS account and region, "
                    f"and a training job with this name already exists ({arn(region, 'training-job', name)})",
                )
            job = TrainingJob(name=name, region=region, request=body)
            self.training_jobs[name] = job
        self._add_tags(job.arn, body.get("Tags", []))
        delay = self.timings.training_start_delay
        threading.Thread(
            target=self._run_training, args=(job, delay), name=f"training-{name}", daemon=True
        ).start()
        return {"TrainingJobArn": job.arn}

    def _run_training(self, job: TrainingJob, start_delay: float) -> None:
        time.sleep(start_delay)
        job.started, job.secondary = now(), "Training"
        try:
            value = self.trainer(job)
            if job.stop_requested.is_set():
                job.status, job.secondary = "Stopped", "Stopped"
            else:
                job.metrics = [{"MetricName": "validation:mAP", "Value": value, "Timestamp": epoch(now())}]
                job.status, job.secondary = "Completed", "Completed"
        except Exception as err:
            traceback.print_exc()
            job.status, job.secondary, job.failure = "Failed", "Failed", f"AlgorithmError: {err}"
        job.ended = now()

    def describe_training_job(self, body: dict[str, Any], region: str) -> dict[str, Any]:
        job = self.training_jobs.get(body.get("TrainingJobName", ""))
        if job is None:
            raise AwsError(
                "ValidationException", f"Requested resource not found: {body.get('TrainingJobName')}"
            )
        return job.describe()

    def list_training_jobs(self, body: dict[str, Any], region: str) -> dict[str, Any]:
        jobs = sorted(
            self.training_jobs.values(),
            key=lambda job: job.created,
            reverse=body.get("SortOrder", "Descending") == "Descending",
        )
        if body.get("NameContains"):
            jobs = [job for job in jobs if body["NameContains"] in job.name]
        if body.get("StatusEquals"):
            jobs = [job for job in jobs if job.status == body["StatusEquals"]]
        start = int(body.get("NextToken") or 0)
        size = int(body.get("MaxResults") or 10)
        page = jobs[start : start + size]
        result: dict[str, Any] = {
            "TrainingJobSummaries": [
                {
                    "TrainingJobName": job.name,
                    "TrainingJobArn": job.arn,
                    "CreationTime": epoch(job.created),
                    "TrainingJobStatus": job.status,
                    **({"TrainingEndTime": epoch(job.ended)} if job.ended else {}),
                }
                for job in page
            ]
        }
        if start + size < len(jobs):
            result["NextToken"] = str(start + size)
        return result

    def stop_training_job(self, body: dict[str, Any], region: str) -> dict[str, Any]:
        job = self.training_jobs.get(body.get("TrainingJobName", ""))
        if job is None:
            raise AwsError(
                "ValidationException", f"Requested resource not found: {body.get('TrainingJobName')}"
            )
        if job.status != "InProgress":
            raise AwsError("ValidationException", f"The training job is {job.status} and cannot be stopped")
        job.stop_requested.set()
        job.status = "Stopping"
        return {}


def json_body(raw: bytes) -> dict[str, Any]:
    try:
        return json.loads(raw or b"{}")
    except json.JSONDecodeError as err:
        raise AwsError("SerializationException", f"request body is not JSON: {err}") from err
