"""Predict every image of the day with bounded concurrency and route the uncertain ones to review."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils import validate_execute_complete_event
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import AirflowException, conf
from botocore.exceptions import ClientError

from active_learning.concurrency import bounded_map
from active_learning.detections import PredictionParseError, parse_prediction, top_score
from active_learning.hooks.errors import error_code, error_message
from active_learning.hooks.models import ModelLineageHook
from active_learning.hooks.retries import client_config
from active_learning.hooks.s3_lines import S3JsonLinesWriter, iter_objects, labelled_lines
from active_learning.hooks.sagemaker_runtime import SageMakerRuntimeHook
from active_learning.images import (
    CONTENT_TYPES,
    MAX_PAYLOAD_BYTES,
    ImageProperties,
    Quarantined,
    check_listed_size,
    read_image,
)
from active_learning.naming import MAX_ATTEMPTS_PER_DAY, attempt_name, transform_job_name
from active_learning.operators.base import LoopOperatorMixin
from active_learning.operators.waiting import WaitOrDeferMixin
from active_learning.routing import Decision, RoutingPolicy
from active_learning.selection import CLASS_BALANCE, SelectionStrategy, label_counts
from active_learning.settings import LoopSettings
from active_learning.triggers.aws_waits import SageMakerWaitTrigger


def transform_output_prefix(settings: LoopSettings, day: date, name: str) -> str:
    """Where the transform job ``name`` writes its ``.out`` files."""
    return settings.key("runs", day.isoformat(), "transform", name) + "/"


def _properties_fields(properties: ImageProperties) -> dict[str, Any]:
    image_format, width, height = properties
    return {"width": width, "height": height, "format": image_format}


def _decision(record: dict[str, Any]) -> Decision:
    return Decision(record["review"], record["reason"], record["top_score"])


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

    :param settings: the loop settings (see :class:`active_learning.settings.LoopSettings`).
    :param day: the day to process, ``YYYY-MM-DD``.
    :param concurrency: endpoint requests (or ``.out`` reads) in flight at most.
    :param deferrable: wait for the transform job in the triggerer.
    :param waiter_delay: seconds between checks of the transform job.
    :param waiter_max_attempts: checks of the transform job before failing.
    """

    aws_hook_class = SageMakerRuntimeHook
    template_fields: Sequence[str] = aws_template_fields("settings", "day")

    def __init__(
        self,
        *,
        settings: Mapping[str, Any] | str,
        day: str,
        concurrency: int = 8,
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
        self.deferrable = deferrable
        self.waiter_delay = waiter_delay
        self.waiter_max_attempts = waiter_max_attempts

    def execute(self, context: Any) -> dict[str, Any]:
        settings, day = self.loop_settings, self.run_day
        if self._mode(settings, day) == "batch_transform":
            return self._by_transform(settings, day)
        runtime = self.hook
        runtime.get_conn()  # create the client once, before the worker threads share it
        s3 = self.s3.get_conn()

        def invoke(key: str, size: int) -> tuple[bytes, ImageProperties]:
            check_listed_size(size)
            data, properties = read_image(s3, settings.bucket, key)
            try:
                body = runtime.invoke_endpoint(settings.endpoint_name, data, CONTENT_TYPES[properties[0]])
            except ClientError as err:
                if error_code(err) != "ModelError":
                    raise  # endpoint missing, access denied, retries exhausted: the run must fail
                raise Quarantined(f"the model rejected the image: {error_message(err)}") from err
            return body, properties

        return self._route_day(settings, day, invoke)

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        # any status: the job's own status decides below. The job's name comes from the event, not
        # from the deferral's kwargs, which ``airflow dags test`` does not pass on.
        validated = validate_execute_complete_event(event)
        return self._transform_result(self.loop_settings, self.run_day, validated["job_name"])

    def _mode(self, settings: LoopSettings, day: date) -> str:
        """``realtime`` or ``batch_transform``; ``auto`` counts the day's objects (listing pages only)."""
        if settings.predict_mode != "auto":
            return settings.predict_mode
        count = sum(
            1 for _ in iter_objects(self.s3.get_conn(), settings.bucket, settings.incoming_prefix(day))
        )
        mode = "batch_transform" if count >= settings.transform_min_images else "realtime"
        self.log.info(
            "%d objects in the day, transform_min_images=%d: %s", count, settings.transform_min_images, mode
        )
        return mode

    # Batch Transform -------------------------------------------------------------------------------
    def _by_transform(self, settings: LoopSettings, day: date) -> dict[str, Any]:
        """Start the day's transform job (or find it again), wait, then route its output."""
        lineage = ModelLineageHook(**self._hook_parameters)
        name, job = self._day_transform_job(lineage, settings, day)
        if job is None:
            serving = lineage.serving_model(settings.endpoint_name)
            if serving is None:
                raise AirflowException(
                    f"Endpoint {settings.endpoint_name} does not exist: deploy a model first"
                )
            incoming = settings.incoming_prefix(day)
            inputs = [
                key[len(incoming) :]
                for key, size in iter_objects(self.s3.get_conn(), settings.bucket, incoming)
                if size <= MAX_PAYLOAD_BYTES  # the rest is quarantined from the listing, as in real time
            ]
            if not inputs:
                return self._transform_result(settings, day, name)
            manifest_key = settings.run_key(day, "transform-input.manifest")
            manifest = [{"prefix": f"s3://{settings.bucket}/{incoming}"}, *inputs]
            self.s3.load_string(json.dumps(manifest), manifest_key, settings.bucket, replace=True)
            lineage.conn.create_transform_job(
                **self._transform_request(settings, day, name, serving.model_name, manifest_key)
            )
            self.log.info(
                "Started transform job %s of model %s on %d objects", name, serving.model_name, len(inputs)
            )
        else:
            self.log.info("Transform job %s is %s: re-attaching", name, job["TransformJobStatus"])
        err = self.wait_or_defer(
            SageMakerWaitTrigger,
            {"job_name": name, "job_type": "transform"},
            "transform_job_completed_or_stopped",
            {"TransformJobName": name},
            waiter_hook=lineage,
        )
        if err is not None:
            self.log.warning("Transform job %s: %s", name, err)
        return self._transform_result(settings, day, name)

    def _day_transform_job(
        self, lineage: ModelLineageHook, settings: LoopSettings, day: date
    ) -> tuple[str, dict[str, Any] | None]:
        """The day's job to re-attach to (its name and description), or the name to start it under.

        A job that ran, even one that failed on some records, is the day's prediction: its output is
        read and the records it did not process are quarantined. Only a job stopped by hand, or one
        that failed with no output at all (capacity, role, model), is followed by a new attempt.
        """
        base = transform_job_name(settings.resource_prefix, day)
        for attempt in range(1, MAX_ATTEMPTS_PER_DAY + 1):
            name = attempt_name(base, attempt)
            job = lineage.describe_or_none("describe_transform_job", TransformJobName=name)
            if job is None:
                return name, None
            status = job["TransformJobStatus"]
            if status not in ("Failed", "Stopped") or (
                status == "Failed" and self._has_output(settings, day, name)
            ):
                return name, job
            self.log.warning(
                "Transform job %s is %s with no output to read: %s", name, status, job.get("FailureReason")
            )
        raise AirflowException(f"{MAX_ATTEMPTS_PER_DAY} transform jobs of this day failed; see {base}*")

    def _has_output(self, settings: LoopSettings, day: date, name: str) -> bool:
        listing = self.s3.get_conn().list_objects_v2(
            Bucket=settings.bucket, Prefix=transform_output_prefix(settings, day, name), MaxKeys=1
        )
        return listing.get("KeyCount", 0) > 0

    @staticmethod
    def _transform_request(
        settings: LoopSettings, day: date, name: str, model_name: str, manifest_key: str
    ) -> dict[str, Any]:
        """One record per image (SingleRecord, no split), the built-in algorithm's image content type."""
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
                "S3OutputPath": f"s3://{settings.bucket}/{transform_output_prefix(settings, day, name)}",
                "Accept": "application/json",
                "AssembleWith": "None",
            },
            "TransformResources": {
                "InstanceType": settings.transform_instance_type,
                "InstanceCount": settings.transform_instance_count,
            },
        }

    def _transform_result(self, settings: LoopSettings, day: date, name: str) -> dict[str, Any]:
        """Route the day from the transform job's ``.out`` files; inputs without one are quarantined."""
        lineage = ModelLineageHook(**self._hook_parameters)
        job = lineage.describe_or_none("describe_transform_job", TransformJobName=name)
        if job is not None and job["TransformJobStatus"] in ("InProgress", "Stopping"):
            raise AirflowException(f"Transform job {name} is still {job['TransformJobStatus']}")
        status = job["TransformJobStatus"] if job else "not started"
        reason = (job or {}).get("FailureReason") or status
        s3 = self.s3.get_conn()
        output = transform_output_prefix(settings, day, name)
        incoming = settings.incoming_prefix(day)
        unprocessed: list[str] = []  # usable images without a .out

        def read_output(key: str, size: int) -> tuple[bytes, None]:
            """The image's ``.out``; its properties are read later, only if it is routed to review."""
            check_listed_size(size)  # left out of the job's input
            try:
                body = s3.get_object(Bucket=settings.bucket, Key=f"{output}{key[len(incoming) :]}.out")[
                    "Body"
                ]
            except ClientError as err:
                if error_code(err) not in ("NoSuchKey", "404"):
                    raise
                read_image(s3, settings.bucket, key)  # a non-image: quarantined with its own reason
                unprocessed.append(key)
                raise Quarantined(
                    f"the transform job {name} did not process it ({status}: {reason})"
                ) from err
            return body.read(), None

        result = self._route_day(settings, day, read_output)
        if job is not None and result["predicted"] == 0 and unprocessed and status != "Completed":
            # usable images and nothing came out: the job (capacity, role, model), so the run must fail;
            # a rerun starts the next attempt
            raise AirflowException(f"Transform job {name} is {status} and wrote no output: {reason}")
        return {**result, "transform_job_name": name, "transform_job_status": status}

    # Both modes ------------------------------------------------------------------------------------
    def _route_day(
        self,
        settings: LoopSettings,
        day: date,
        detect: Callable[[str, int], tuple[bytes, ImageProperties | None]],
    ) -> dict[str, Any]:
        """Predict every object of the day with ``detect(key, listed size)`` (the endpoint, or a
        transform job's output), route the whole day, write the files.

        ``detect`` returns the prediction's body and the image's properties, or ``None`` when it did
        not read the image (a transform job's output): the images routed to review are then read and
        checked here, since only they need their size (for the reviewers' boxes).
        """
        selection = SelectionStrategy(settings.selection_strategy, settings.random_share)
        policy = RoutingPolicy(settings.threshold, settings.max_reviews, settings.audit_fraction, selection)
        counts: Mapping[int, int] = {}
        if selection.name == CLASS_BALANCE and settings.max_reviews is not None:
            # the labels of the days before this one (a rerun of the day must not count its own)
            counts = label_counts(
                labelled_lines(self.s3, settings, day - timedelta(days=1)), settings.label_attribute
            )
            self.log.info("Labelled boxes per class so far: %s", dict(sorted(counts.items())))
        s3 = self.s3.get_conn()

        def predict(listed: tuple[str, int]) -> dict[str, Any]:
            key, size = listed
            source = f"s3://{settings.bucket}/{key}"
            try:
                body, properties = detect(key, size)
                try:
                    detections = parse_prediction(body)
                except PredictionParseError as err:
                    raise Quarantined(f"unreadable prediction: {err}") from err
            except Quarantined as err:
                return {"source": source, "reason": str(err)}
            decision = policy.with_audit(policy.decide(detections), day.isoformat(), source)
            return {
                "source": source,
                **({} if properties is None else _properties_fields(properties)),
                "detections": [detection.to_list() for detection in detections],
                "top_score": top_score(detections),
                "rank": selection.rank(detections, counts),
                "review": decision.review,
                "reason": decision.reason,
            }

        budget = policy.budget(day.isoformat())
        bucket_uri = f"s3://{settings.bucket}/"
        reasons: Counter[str] = Counter()
        images = reviews = 0
        objects = iter_objects(s3, settings.bucket, settings.incoming_prefix(day))
        predictions = S3JsonLinesWriter(self.s3, settings.bucket, settings.run_key(day, "predictions.jsonl"))
        quarantine = S3JsonLinesWriter(self.s3, settings.bucket, settings.run_key(day, "quarantine.jsonl"))
        with tempfile.TemporaryFile("w+", encoding="utf-8") as spool, quarantine, predictions:
            for _, record in bounded_map(predict, objects, self.concurrency):
                images += 1
                if "detections" not in record:
                    self.log.warning("Quarantined %s: %s", record["source"], record["reason"])
                    quarantine.write(record)
                    continue
                # the strategy's rank is all the second pass needs from the first: not written out
                budget.offer(record["source"], _decision(record), tuple(record.pop("rank")))
                spool.write(json.dumps(record) + "\n")
            # The review cap needs the whole day: a second pass over the spool applies it.
            spool.seek(0)
            for line in spool:
                record = json.loads(line)
                decision = budget.final(record["source"], _decision(record))
                if decision.review and "width" not in record:
                    try:
                        _, properties = read_image(s3, settings.bucket, record["source"][len(bucket_uri) :])
                    except Quarantined as err:  # its review slot stays unused: rare, the model read it
                        self.log.warning("Quarantined %s: %s", record["source"], err)
                        quarantine.write({"source": record["source"], "reason": str(err)})
                        continue
                    record = {"source": record["source"], **_properties_fields(properties), **record}
                reasons[decision.reason] += 1
                reviews += decision.review
                predictions.write({**record, "review": decision.review, "reason": decision.reason})
        result = {
            "images": images,
            "predicted": predictions.count,
            "quarantined": quarantine.count,
            "to_review": reviews,
            "reasons": dict(reasons),
            "predictions_uri": predictions.uri,
            "quarantine_uri": quarantine.uri,
        }
        self.log.info("Predictions of %s: %s", day, result)
        return result
