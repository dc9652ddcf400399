"""The day's Batch Transform job: found again or started (at most 3 attempts a day), its output read."""

from __future__ import annotations

import json
import logging
from datetime import date
from typing import Any

from airflow.providers.common.compat.sdk import AirflowException
from botocore.exceptions import ClientError

from active_learning.hooks.errors import error_code
from active_learning.hooks.models import ModelLineageHook
from active_learning.hooks.s3_lines import S3ClientHook, iter_objects
from active_learning.images import MAX_PAYLOAD_BYTES, Quarantined, check_listed_size, read_image
from active_learning.naming import MAX_ATTEMPTS_PER_DAY, attempt_name, transform_job_name
from active_learning.prediction.day import ImagePrediction, Predictor
from active_learning.settings import LoopSettings


def transform_output_prefix(settings: LoopSettings, day: date, name: str) -> str:
    """Where the transform job ``name`` writes its ``.out`` files."""
    return settings.key("runs", day.isoformat(), "transform", name) + "/"


class DayTransformJob:
    """The Batch Transform job that predicts one day (one per day; a new attempt only after a job
    that ran for nothing).

    :param sagemaker: the SageMaker hook that finds the serving model and describes and creates jobs.
    :param s3: the hook of the day's objects, the job's input manifest and its output.
    """

    def __init__(
        self,
        sagemaker: ModelLineageHook,
        s3: S3ClientHook,
        settings: LoopSettings,
        day: date,
        log: logging.Logger,
    ) -> None:
        self.sagemaker, self.s3, self.settings, self.day, self.log = sagemaker, s3, settings, day, log

    def describe(self, name: str) -> dict[str, Any] | None:
        return self.sagemaker.describe_or_none("describe_transform_job", TransformJobName=name)

    def current_attempt(self) -> tuple[str, dict[str, Any] | None]:
        """The day's job to re-attach to (its name and description), or the name to start it under.

        A job that ran, even one that failed on some records, is the day's prediction: its output is
        read and the records it did not process are quarantined. Only a job stopped by hand, or one
        that failed with no output at all (capacity, role, model), is followed by a new attempt.
        """
        base = transform_job_name(self.settings.resource_prefix, self.day)
        for attempt in range(1, MAX_ATTEMPTS_PER_DAY + 1):
            name = attempt_name(base, attempt)
            job = self.describe(name)
            if job is None:
                return name, None
            status = job["TransformJobStatus"]
            if status not in ("Failed", "Stopped") or (status == "Failed" and self.has_output(name)):
                return name, job
            self.log.warning(
                "Transform job %s is %s with no output to read: %s", name, status, job.get("FailureReason")
            )
        raise AirflowException(f"{MAX_ATTEMPTS_PER_DAY} transform jobs of this day failed; see {base}*")

    def has_output(self, name: str) -> bool:
        listing = self.s3.get_conn().list_objects_v2(
            Bucket=self.settings.bucket,
            Prefix=transform_output_prefix(self.settings, self.day, name),
            MaxKeys=1,
        )
        return listing.get("KeyCount", 0) > 0

    def start(self, name: str) -> int:
        """Start job ``name`` with the serving model on the day's objects of at most 6 MB (the rest is
        quarantined from the listing, as in real time); returns their number, 0 starting nothing."""
        settings = self.settings
        serving = self.sagemaker.serving_model(settings.endpoint_name)
        if serving is None:
            raise AirflowException(f"Endpoint {settings.endpoint_name} does not exist: deploy a model first")
        incoming = settings.incoming_prefix(self.day)
        inputs = [
            key[len(incoming) :]
            for key, size in iter_objects(self.s3.get_conn(), settings.bucket, incoming)
            if size <= MAX_PAYLOAD_BYTES
        ]
        if not inputs:
            return 0
        manifest_key = settings.run_key(self.day, "transform-input.manifest")
        manifest = [{"prefix": f"s3://{settings.bucket}/{incoming}"}, *inputs]
        self.s3.load_string(json.dumps(manifest), manifest_key, settings.bucket, replace=True)
        self.sagemaker.conn.create_transform_job(**self.request(name, serving.model_name, manifest_key))
        self.log.info(
            "Started transform job %s of model %s on %d objects", name, serving.model_name, len(inputs)
        )
        return len(inputs)

    def request(self, name: str, model_name: str, manifest_key: str) -> dict[str, Any]:
        """One record per image (SingleRecord, no split), the built-in algorithm's image content type."""
        settings = self.settings
        return {
            "TransformJobName": name,
            "ModelName": model_name,
            "MaxConcurrentTransforms": settings.transform_max_concurrent,
            "MaxPayloadInMB": MAX_PAYLOAD_BYTES // 2**20,
            "BatchStrategy": "SingleRecord",
            "TransformInput": {
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "ManifestFile",
                        "S3Uri": f"s3://{settings.bucket}/{manifest_key}",
                    }
                },
                "ContentType": "application/x-image",
                "SplitType": "None",
                "CompressionType": "None",
            },
            "TransformOutput": {
                "S3OutputPath": f"s3://{settings.bucket}/{transform_output_prefix(settings, self.day, name)}",
                "Accept": "application/json",
                "AssembleWith": "None",
            },
            "TransformResources": {
                "InstanceType": settings.transform_instance_type,
                "InstanceCount": settings.transform_instance_count,
            },
        }

    def output_reader(self, name: str, why_missing: str) -> tuple[Predictor, list[str]]:
        """A predictor that reads each image's ``.out`` file of job ``name``, and the list it fills
        with the usable images that have none (quarantined with ``why_missing``)."""
        settings = self.settings
        client = self.s3.get_conn()
        output = transform_output_prefix(settings, self.day, name)
        incoming = settings.incoming_prefix(self.day)
        unprocessed: list[str] = []

        def read_output(key: str, size: int) -> ImagePrediction:
            check_listed_size(size)  # left out of the job's input
            try:
                body = client.get_object(Bucket=settings.bucket, Key=f"{output}{key[len(incoming) :]}.out")
            except ClientError as err:
                if error_code(err) not in ("NoSuchKey", "404"):
                    raise
                read_image(client, settings.bucket, key)  # a non-image: quarantined with its own reason
                unprocessed.append(key)
                raise Quarantined(f"the transform job {name} did not process it ({why_missing})") from err
            return ImagePrediction(body["Body"].read(), None)

        return read_output, unprocessed
