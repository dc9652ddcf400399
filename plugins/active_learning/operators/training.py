"""Incrementally train the object-detection model on every human label so far."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils import validate_execute_complete_event
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    AirflowSkipException,
    conf,
)

from active_learning.hooks.models import ModelLineageHook, builtin_image_uri
from active_learning.hooks.s3_lines import S3JsonLinesWriter, labelled_lines
from active_learning.lineage import training_lineage
from active_learning.links.console import TrainingJobLink
from active_learning.naming import MAX_ATTEMPTS_PER_DAY, attempt_name, training_job_name
from active_learning.operators.base import LoopOperatorMixin
from active_learning.operators.waiting import WaitOrDeferMixin
from active_learning.settings import ConfinementError, LoopSettings, split_s3_uri
from active_learning.training_data import (
    TAG_BASE_MODEL,
    TAG_REJECTED,
    TAG_TRAINING_LINES,
    final_metric,
    hyperparameters,
    in_validation_hold_out,
)
from active_learning.triggers.aws_waits import SageMakerWaitTrigger

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage


class IncrementalTrainingOperator(WaitOrDeferMixin, LoopOperatorMixin, AwsBaseOperator[ModelLineageHook]):
    """Train the built-in object-detection algorithm from the serving model on all labels so far.

    Starts from whatever model serves when it starts. Training data is every line of every
    ``runs/<day>/augmented.manifest`` written so far (a late day's labels join the next training,
    and the model does not forget); a line whose ``source-ref`` lies outside the loop's bucket and
    prefix fails the task naming the day and the line. Validation is the configured fixed manifest,
    else a deterministic hold-out. Skips (not fails) when fewer than ``min_new_labels`` lines, or
    none, arrived since the serving model was trained. The job name derives from the day and the
    serving model: a retry re-attaches to the job it started and never starts a second one; only
    after a Failed or Stopped job, or one whose model an endpoint update rolled back (tagged by
    ``UpdateEndpointOperator``), does a retry start a new attempt (at most 3 a day).

    :param settings: the loop settings (see :class:`active_learning.settings.LoopSettings`).
    :param day: the run's day, ``YYYY-MM-DD``.
    :param image_uri: the training image; default: the built-in object-detection image of the region.
    :param hyperparameter_overrides: changes to the seed's hyperparameters.
    :param max_runtime_seconds: ``StoppingCondition.MaxRuntimeInSeconds``.
    :param volume_size_gb: the training instance's volume.
    :param deferrable: wait in the triggerer rather than in a worker slot.
    :param waiter_delay: seconds between status checks.
    :param waiter_max_attempts: status checks before failing.
    """

    aws_hook_class = ModelLineageHook
    template_fields: Sequence[str] = aws_template_fields("settings", "day", "image_uri")
    template_fields_renderers = {"settings": "json"}
    operator_extra_links = (TrainingJobLink(),)

    def __init__(
        self,
        *,
        settings: Mapping[str, Any] | str,
        day: str,
        image_uri: str | None = None,
        hyperparameter_overrides: dict[str, str] | None = None,
        max_runtime_seconds: int = 360_000,
        volume_size_gb: int = 50,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        waiter_delay: int = 60,
        waiter_max_attempts: int = 720,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.day = day
        self.image_uri = image_uri
        self.hyperparameter_overrides = hyperparameter_overrides or {}
        self.max_runtime_seconds = max_runtime_seconds
        self.volume_size_gb = volume_size_gb
        self.deferrable = deferrable
        self.waiter_delay = waiter_delay
        self.waiter_max_attempts = waiter_max_attempts
        # the completed job's description, for the lineage (set by _result, in whichever process
        # finishes the task: execute's, or execute_complete's after a deferral)
        self.trained_job: dict[str, Any] | None = None

    def execute(self, context: Any) -> dict[str, Any]:
        settings, day = self.loop_settings, self.run_day
        serving = self.hook.serving_model(settings.endpoint_name)
        if serving is None:
            raise AirflowException(f"Endpoint {settings.endpoint_name} does not exist: deploy a model first")
        base = training_job_name(settings.resource_prefix, day, serving.model_data_url)
        job_name = self._attempt_name(base)
        self.persist_link(TrainingJobLink, context, job_name=job_name)
        job = self.hook.describe_or_none("describe_training_job", TrainingJobName=job_name)
        if job is None:
            self._start(
                job_name, settings, serving.model_data_url, int(serving.tags.get(TAG_TRAINING_LINES, 0))
            )
        elif job["TrainingJobStatus"] == "Completed":
            self.log.info("Training job %s already completed: re-attaching", job_name)
            return self._result(job_name)
        else:
            self.log.info("Training job %s is %s: re-attaching", job_name, job["TrainingJobStatus"])
        err = self.wait_or_defer(
            SageMakerWaitTrigger,
            {"job_name": job_name, "job_type": "training"},
            "training_job_completed_or_stopped",
            {"TrainingJobName": job_name},
        )
        if err is not None:
            self.log.warning("Training job %s: %s", job_name, err)
        return self._result(job_name)

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        validated = validate_execute_complete_event(event)
        if validated["status"] not in ("success", "failed", "stopped"):
            raise AirflowException(f"Waiting for training job failed: {validated.get('message')}")
        return self._result(validated["job_name"])

    def _attempt_name(self, base: str) -> str:
        """The day's job to attach to or start: the first attempt that did not fail or stop, and
        whose model no endpoint update rolled back (clearing the day then trains a new attempt)."""
        for attempt in range(1, MAX_ATTEMPTS_PER_DAY + 1):
            name = attempt_name(base, attempt)
            job = self.hook.describe_or_none("describe_training_job", TrainingJobName=name)
            if job is None:
                return name
            if job["TrainingJobStatus"] in ("Failed", "Stopped"):
                reason = job.get("FailureReason")
            elif job["TrainingJobStatus"] == "Completed":
                reason = self.hook.tags_of(job["TrainingJobArn"]).get(TAG_REJECTED)
                if reason is None:
                    return name
            else:
                return name
            self.log.warning("Training job %s is %s: %s", name, job["TrainingJobStatus"], reason)
        raise AirflowException(f"{MAX_ATTEMPTS_PER_DAY} training attempts for this day failed; see {base}*")

    def _start(self, job_name: str, settings: LoopSettings, base_model: str, trained_lines: int) -> None:
        prefix = settings.key("training", job_name, "input")
        train = S3JsonLinesWriter(self.s3, settings.bucket, f"{prefix}/train.manifest")
        validation = S3JsonLinesWriter(self.s3, settings.bucket, f"{prefix}/validation.manifest")
        try:
            with train, validation:
                hold_out = settings.validation_manifest_uri is None
                for line in labelled_lines(self.s3, settings):
                    if hold_out and in_validation_hold_out(line["source-ref"], settings.validation_fraction):
                        validation.write(line)
                    else:
                        train.write(line)
        except ConfinementError as err:  # a retry reads the same line: fail once, for a person to look
            raise AirflowFailException(f"Not training: {err}") from err
        total = train.count + validation.count
        new_labels = total - trained_lines
        # never on no new label (min_new_labels=0 included): a rerun of a day whose model already
        # serves would otherwise train and update again on the same lines, drifting each time
        if new_labels < max(settings.min_new_labels, 1):
            raise AirflowSkipException(
                f"{max(new_labels, 0)} new labelled images since the serving model, which was trained on "
                f"{trained_lines} of the {total} labelled so far (min_new_labels={settings.min_new_labels})"
                ": not training"
            )
        validation_uri = settings.validation_manifest_uri or validation.uri
        if train.count == 0 or (settings.validation_manifest_uri is None and validation.count == 0):
            raise AirflowSkipException(
                f"{train.count} training and {validation.count} validation lines: both are needed"
            )
        self.hook.conn.create_training_job(
            **self._request(job_name, settings, train.uri, validation_uri, base_model, train.count, total)
        )
        self.log.info("Started training job %s on %d lines (%d new)", job_name, train.count, new_labels)

    def _request(
        self,
        job_name: str,
        settings: LoopSettings,
        train_uri: str,
        validation_uri: str,
        base_model: str,
        train_count: int,
        total: int,
    ) -> dict[str, Any]:
        image = self.image_uri or builtin_image_uri(self.hook.conn_region_name)
        split_s3_uri(base_model)  # a clear error when the serving model has no S3 artifact

        def manifest_channel(name: str, uri: str) -> dict[str, Any]:
            return {
                "ChannelName": name,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "AugmentedManifestFile",
                        "S3Uri": uri,
                        "S3DataDistributionType": "FullyReplicated",
                        "AttributeNames": ["source-ref", settings.label_attribute],
                    }
                },
                "ContentType": "application/x-recordio",
                "RecordWrapperType": "RecordIO",
                "InputMode": "Pipe",
            }

        return {
            "TrainingJobName": job_name,
            "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "Pipe"},
            "RoleArn": settings.role_arn,
            "HyperParameters": hyperparameters(
                len(settings.class_names), train_count, self.hyperparameter_overrides
            ),
            "InputDataConfig": [
                manifest_channel("train", train_uri),
                manifest_channel("validation", validation_uri),
                {
                    "ChannelName": "model",
                    "DataSource": {
                        "S3DataSource": {
                            "S3DataType": "S3Prefix",
                            "S3Uri": base_model,
                            "S3DataDistributionType": "FullyReplicated",
                        }
                    },
                    "ContentType": "application/x-sagemaker-model",
                    "InputMode": "File",
                },
            ],
            "OutputDataConfig": {"S3OutputPath": settings.training_output_uri},
            "ResourceConfig": {
                "InstanceType": settings.training_instance_type,
                "InstanceCount": 1,
                "VolumeSizeInGB": self.volume_size_gb,
            },
            "StoppingCondition": {"MaxRuntimeInSeconds": self.max_runtime_seconds},
            "Tags": [
                {"Key": TAG_TRAINING_LINES, "Value": str(total)},
                {"Key": TAG_BASE_MODEL, "Value": base_model[:256]},
            ],
        }

    def _result(self, job_name: str) -> dict[str, Any]:
        job = self.hook.describe_training_job(job_name)
        status = job["TrainingJobStatus"]
        if status != "Completed":
            raise AirflowException(f"Training job {job_name} is {status}: {job.get('FailureReason', '')}")
        self.trained_job = job
        return {
            "training_job_name": job_name,
            "model_data_url": job["ModelArtifacts"]["S3ModelArtifacts"],
            "validation_map": final_metric(job),
            "training_lines": int(self.hook.tags_of(job["TrainingJobArn"]).get(TAG_TRAINING_LINES, 0)),
        }

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage (called by its provider, when installed, after the task ran): the day's
        augmented manifest and the job's channels (manifests trained on, base model) in; the job's
        ``model.tar.gz`` out. From the job description the task already read: no AWS call.

        :param task_instance: the task instance that ran.
        """
        return training_lineage(self.loop_settings, self.run_day, self.trained_job, task_instance)
