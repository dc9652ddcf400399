"""Predict every image of the day (in real time or by Batch Transform) and route the uncertain ones
to review; the jobs themselves are in :mod:`active_learning.prediction`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from functools import cached_property
from logging import Logger
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils import validate_execute_complete_event
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import AirflowException, conf

from active_learning.hooks.models import ModelLineageHook
from active_learning.hooks.retries import client_config
from active_learning.hooks.s3_lines import S3JsonLinesWriter, iter_json_lines, iter_objects
from active_learning.hooks.sagemaker_runtime import SageMakerRuntimeHook
from active_learning.lineage import batch_predict_lineage
from active_learning.operators.base import LoopOperatorMixin
from active_learning.operators.waiting import WaitOrDeferMixin
from active_learning.prediction.day import (
    KeysDigest,
    predict_and_route_day,
    predict_records,
    route_day,
    shard_digests,
    shard_key,
)
from active_learning.prediction.realtime import endpoint_predictor
from active_learning.prediction.transform import DayTransformJob
from active_learning.settings import LoopSettings
from active_learning.triggers.aws_waits import SageMakerWaitTrigger

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage


def day_predict_mode(s3_client: Any, settings: LoopSettings, day: date, log: Logger) -> str:
    """``realtime`` or ``batch_transform``; ``auto`` counts the day's objects (listing pages only)."""
    if settings.predict_mode != "auto":
        return settings.predict_mode
    count = sum(1 for _ in iter_objects(s3_client, settings.bucket, settings.incoming_prefix(day)))
    mode = "batch_transform" if count >= settings.transform_min_images else "realtime"
    log.info("%d objects in the day, transform_min_images=%d: %s", count, settings.transform_min_images, mode)
    return mode


class BatchPredictOperator(WaitOrDeferMixin, LoopOperatorMixin, AwsBaseOperator[SageMakerRuntimeHook]):
    """Predict the day's images and decide which go to human review.

    Lists ``incoming/<day>/``, invokes the endpoint for each image with at most ``concurrency``
    requests in flight (botocore adaptive retries), applies the routing policy to the whole day and
    writes ``runs/<day>/predictions.jsonl`` and ``runs/<day>/quarantine.jsonl`` (inputs that could
    not be used, with the reason). Objects over 6 MB (InvokeEndpoint's limit, size from the listing) are
    quarantined without being downloaded, and images over :data:`MAX_IMAGE_PIXELS` (40 megapixels, read
    from the header) without being decoded. Images are streamed and results spooled to a local file, so memory
    does not grow with the day's image count (the review cap keeps at most ``max_reviews`` entries).

    With ``predict_mode=batch_transform`` one Batch Transform job a day predicts instead, and its
    ``.out`` files are routed the same way; only the images routed to review are then downloaded here.

    With ``shards`` over 1, :class:`PredictShardOperator` tasks predicted the day in real time
    (``runs/<day>/shards/``): this task only routes their records, as one task would have.

    :param settings: the loop settings (see :class:`active_learning.settings.LoopSettings`).
    :param day: the day to process, ``YYYY-MM-DD``.
    :param concurrency: endpoint requests (or ``.out`` reads) in flight at most.
    :param shards: how many ``predict_shard`` tasks predicted the day in real time (1: none).
    :param deferrable: wait for the transform job in the triggerer.
    :param waiter_delay: seconds between checks of the transform job.
    :param waiter_max_attempts: checks of the transform job before failing.
    """

    aws_hook_class = SageMakerRuntimeHook
    template_fields: Sequence[str] = aws_template_fields("settings", "day")
    template_fields_renderers = {"settings": "json"}

    def __init__(
        self,
        *,
        settings: Mapping[str, Any] | str,
        day: str,
        concurrency: int = 8,
        shards: int = 1,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        waiter_delay: int = 60,
        waiter_max_attempts: int = 1440,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("botocore_config", client_config(concurrency))
        super().__init__(**kwargs)
        self.settings = settings
        self.day = day
        self.concurrency = concurrency
        self.shards = shards
        self.deferrable = deferrable
        self.waiter_delay = waiter_delay
        self.waiter_max_attempts = waiter_max_attempts

    @cached_property
    def sagemaker(self) -> ModelLineageHook:
        """The SageMaker hook of the transform jobs, with this task's connection."""
        return ModelLineageHook(**self._hook_parameters)

    def transform_job(self, settings: LoopSettings, day: date) -> DayTransformJob:
        return DayTransformJob(self.sagemaker, self.s3, settings, day, self.log)

    def execute(self, context: Any) -> dict[str, Any]:
        settings, day = self.loop_settings, self.run_day
        if self.predict_mode(settings, day) == "batch_transform":
            return self._by_transform(settings, day)
        if self.shards > 1:
            return route_day(self.s3, settings, day, self._shard_records(settings, day), self.log)
        predict = endpoint_predictor(self.hook, self.s3.get_conn(), settings)
        return predict_and_route_day(self.s3, settings, day, predict, self.concurrency, self.log)

    def _shard_records(self, settings: LoopSettings, day: date) -> Iterator[dict[str, Any]]:
        """The records of every shard of the day, shard after shard. A missing shard file, or one
        that does not hold its shard of the day's listing now (images added or removed since the
        shards ran), fails the task before any output is written."""
        keys = [shard_key(settings, day, shard, self.shards) for shard in range(self.shards)]
        for shard, key in enumerate(keys):
            if not self.s3.check_for_key(key, settings.bucket):
                raise AirflowException(
                    f"s3://{settings.bucket}/{key} is missing: predict_shard {shard} has not predicted "
                    f"{day} (clear it with its downstream tasks)"
                )
        listing = iter_objects(self.s3.get_conn(), settings.bucket, settings.incoming_prefix(day))
        expected = shard_digests((listed for listed, _ in listing), self.shards)
        bucket_uri = f"s3://{settings.bucket}/"
        for shard, key in enumerate(keys):
            found = KeysDigest()
            for record in iter_json_lines(self.s3, settings.bucket, key):
                found.add(record["source"].removeprefix(bucket_uri))
                yield record
            if found != expected[shard]:
                raise AirflowException(
                    f"s3://{settings.bucket}/{key} does not hold shard {shard} of "
                    f"{settings.incoming_prefix(day)} as listed now ({found.count} images in the file, "
                    f"{expected[shard].count} listed): the day's images changed since predict_shard "
                    f"{shard} ran (clear predict_shard with its downstream tasks)"
                )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        # any status: the job's own status decides below. The job's name comes from the event, not
        # from the deferral's kwargs, which ``airflow dags test`` does not pass on.
        validated = validate_execute_complete_event(event)
        return self.transform_result(self.loop_settings, self.run_day, validated["job_name"])

    def predict_mode(self, settings: LoopSettings, day: date) -> str:
        """``realtime`` or ``batch_transform`` (:func:`day_predict_mode`)."""
        return day_predict_mode(self.s3.get_conn(), settings, day, self.log)

    def _by_transform(self, settings: LoopSettings, day: date) -> dict[str, Any]:
        """Start the day's transform job (or find it again), wait, then route its output."""
        job = self.transform_job(settings, day)
        name, description = job.current_attempt()
        if description is None:
            if job.start(name) == 0:
                return self.transform_result(settings, day, name)
        else:
            self.log.info("Transform job %s is %s: re-attaching", name, description["TransformJobStatus"])
        err = self.wait_or_defer(
            SageMakerWaitTrigger,
            {"job_name": name, "job_type": "transform"},
            "transform_job_completed_or_stopped",
            {"TransformJobName": name},
            waiter_hook=self.sagemaker,
        )
        if err is not None:
            self.log.warning("Transform job %s: %s", name, err)
        return self.transform_result(settings, day, name)

    def transform_result(self, settings: LoopSettings, day: date, name: str) -> dict[str, Any]:
        """Route the day from the transform job's ``.out`` files; inputs without one are quarantined."""
        job = self.transform_job(settings, day)
        description = job.describe(name)
        if description is not None and description["TransformJobStatus"] in ("InProgress", "Stopping"):
            raise AirflowException(f"Transform job {name} is still {description['TransformJobStatus']}")
        status = description["TransformJobStatus"] if description else "not started"
        reason = (description or {}).get("FailureReason") or status
        read_output, unprocessed = job.output_reader(name, f"{status}: {reason}")
        result = predict_and_route_day(self.s3, settings, day, read_output, self.concurrency, self.log)
        if description is not None and result["predicted"] == 0 and unprocessed and status != "Completed":
            # usable images and nothing came out: the job (capacity, role, model), so the run must fail;
            # a rerun starts the next attempt
            raise AirflowException(f"Transform job {name} is {status} and wrote no output: {reason}")
        return {**result, "transform_job_name": name, "transform_job_status": status}

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage (called by its provider, when installed, after the task ran): the day's
        ``incoming/<day>/`` and the endpoint in; ``predictions.jsonl`` and ``quarantine.jsonl`` out.

        All of it follows from the rendered settings and day: no AWS call.

        :param task_instance: the task instance that ran.
        """
        return batch_predict_lineage(
            self.loop_settings, self.run_day, self.hook.conn_region_name, task_instance
        )


class PredictShardOperator(LoopOperatorMixin, AwsBaseOperator[SageMakerRuntimeHook]):
    """Predict one shard of the day in real time, for a day spread over workers (``predict_shards``).

    The shard is the day's objects whose key hashes to ``shard`` (:func:`shard_of`: the same on every
    rerun); their records go to ``runs/<day>/shards/<shard>-of-<shards>.jsonl``, written whole (a
    retry rewrites it). ``batch_predict`` then routes every shard's records at once. In a day that
    ``predict_mode`` sends to Batch Transform, a shard does nothing: ``batch_predict`` runs the job.

    :param settings: the loop settings (see :class:`active_learning.settings.LoopSettings`).
    :param day: the day to process, ``YYYY-MM-DD``.
    :param shard: this shard's index, 0 to ``shards`` - 1 (mapped over).
    :param shards: how many shards the day has.
    :param concurrency: endpoint requests in flight at most, in this shard.
    """

    aws_hook_class = SageMakerRuntimeHook
    template_fields: Sequence[str] = aws_template_fields("settings", "day")
    template_fields_renderers = {"settings": "json"}

    def __init__(
        self,
        *,
        settings: Mapping[str, Any] | str,
        day: str,
        shard: int,
        shards: int,
        concurrency: int = 8,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("botocore_config", client_config(concurrency))
        super().__init__(**kwargs)
        self.settings = settings
        self.day = day
        self.shard = shard
        self.shards = shards
        self.concurrency = concurrency

    def execute(self, context: Any) -> dict[str, Any]:
        settings, day = self.loop_settings, self.run_day
        if not 0 <= self.shard < self.shards:
            raise AirflowException(f"shard {self.shard} is not within 0..{self.shards - 1}")
        if day_predict_mode(self.s3.get_conn(), settings, day, self.log) == "batch_transform":
            self.log.info("%s goes to one Batch Transform job, which batch_predict runs", day)
            return {
                "shard": self.shard,
                "images": 0,
                "quarantined": 0,
                "shard_uri": None,
                "mode": "batch_transform",
            }
        predict = endpoint_predictor(self.hook, self.s3.get_conn(), settings)
        records = predict_records(
            self.s3, settings, day, predict, self.concurrency, (self.shard, self.shards)
        )
        images = quarantined = 0
        writer = S3JsonLinesWriter(
            self.s3, settings.bucket, shard_key(settings, day, self.shard, self.shards)
        )
        with writer:
            for record in records:
                images += 1
                quarantined += "detections" not in record
                writer.write(record)
        result = {"shard": self.shard, "images": images, "quarantined": quarantined, "shard_uri": writer.uri}
        self.log.info("Shard %d of %d of %s: %s", self.shard + 1, self.shards, day, result)
        return result
