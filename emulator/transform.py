"""SageMaker Batch Transform jobs that really run: workers over the input, one ``.out`` per object.

As SageMaker does with ``BatchStrategy=SingleRecord`` and ``SplitType=None``: every object of the
input (an S3 prefix, or the keys a manifest file lists) is one request to the model; its answer is
written to ``<S3OutputPath>/<key relative to the input prefix>.out``. A record the model rejects, or
one over ``MaxPayloadInMB``, gets no ``.out``; the job goes on with the others and ends ``Failed``
with a job-level ``FailureReason`` (the per-record detail is in CloudWatch logs there, in this
emulator's log here). ``InstanceCount`` x ``MaxConcurrentTransforms`` requests run at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from emulator.protocol import SAGEMAKER_NAME, AwsError, arn, check_name, epoch, now, require

RECORD_FAILURE = "ClientError: See job logs for more information"
Predictor = Callable[[bytes], dict[str, Any]]


@dataclass
class TransformJob:
    name: str
    region: str
    request: dict[str, Any]
    created: datetime = field(default_factory=now)
    status: str = "InProgress"
    failure: str | None = None
    started: datetime | None = None
    ended: datetime | None = None
    failed_records: list[str] = field(default_factory=list)
    stop_requested: threading.Event = field(default_factory=threading.Event)

    @property
    def arn(self) -> str:
        return arn(self.region, "transform-job", self.name.lower())

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "TransformJobName": self.name,
            "TransformJobArn": self.arn,
            "TransformJobStatus": self.status,
            "ModelName": self.request["ModelName"],
            "MaxConcurrentTransforms": self.request.get("MaxConcurrentTransforms", 1),
            "MaxPayloadInMB": self.request.get("MaxPayloadInMB", 6),
            "BatchStrategy": self.request.get("BatchStrategy", "SingleRecord"),
            "TransformInput": self.request["TransformInput"],
            "TransformOutput": self.request["TransformOutput"],
            "TransformResources": self.request["TransformResources"],
            "CreationTime": epoch(self.created),
        }
        if self.started:
            described["TransformStartTime"] = epoch(self.started)
        if self.ended:
            described["TransformEndTime"] = epoch(self.ended)
        if self.failure:
            described["FailureReason"] = self.failure
        return described


class TransformJobs:
    """The transform-job operations, working with the collaborators they are given.

    :param s3: makes a boto3 S3 client (to read the input and write the output).
    :param predictor: the model's predict function for a SageMaker model name and region.
    :param latency: seconds added to each record, like a remote container's round trip.
    """

    def __init__(
        self, s3: Callable[[], Any], predictor: Callable[[str, str], Predictor], latency: float = 0.0
    ) -> None:
        self.s3 = s3
        self.predictor = predictor
        self.latency = latency
        self.lock = threading.Lock()
        self.jobs: dict[str, TransformJob] = {}
        self.handlers: dict[str, Callable[[dict[str, Any], str], dict[str, Any]]] = {
            "CreateTransformJob": self.create,
            "DescribeTransformJob": self.describe,
            "StopTransformJob": self.stop,
        }

    def create(self, body: dict[str, Any], region: str) -> dict[str, Any]:
        name = check_name(body.get("TransformJobName"), "transformJobName", SAGEMAKER_NAME)
        require(body, "ModelName", "TransformInput", "TransformOutput", "TransformResources")
        source = body["TransformInput"].get("DataSource", {}).get("S3DataSource", {})
        require(source, "S3DataType", "S3Uri")
        if source["S3DataType"] not in ("S3Prefix", "ManifestFile"):
            raise AwsError("ValidationException", f"S3DataType {source['S3DataType']} is not supported")
        self.predictor(body["ModelName"], region)  # a missing model is refused now, as AWS does
        with self.lock:
            if name in self.jobs:
                raise AwsError(
                    "ValidationException",
                    f"Job name must be unique within an AWS account and region, and a job with this "
                    f"name already exists ({arn(region, 'transform-job', name.lower())})",
                )
            job = TransformJob(name=name, region=region, request=body)
            self.jobs[name] = job
        threading.Thread(target=self._run, args=(job,), name=f"transform-{name}", daemon=True).start()
        return {"TransformJobArn": job.arn}

    def describe(self, body: dict[str, Any], region: str) -> dict[str, Any]:
        job = self.jobs.get(body.get("TransformJobName", ""))
        if job is None:
            raise AwsError("ValidationException", f"Could not find job {body.get('TransformJobName')!r}")
        return job.describe()

    def stop(self, body: dict[str, Any], region: str) -> dict[str, Any]:
        job = self.jobs.get(body.get("TransformJobName", ""))
        if job is None:
            raise AwsError("ValidationException", f"Could not find job {body.get('TransformJobName')!r}")
        if job.status == "InProgress":
            job.stop_requested.set()
            job.status = "Stopping"
        return {}

    # the work ---------------------------------------------------------------------------------
    def _inputs(self, job: TransformJob) -> Iterator[tuple[str, str, str]]:
        """``(bucket, key, key relative to the input prefix)`` of every record."""
        source = job.request["TransformInput"]["DataSource"]["S3DataSource"]
        bucket, _, prefix = source["S3Uri"].removeprefix("s3://").partition("/")
        s3 = self.s3()
        if source["S3DataType"] == "S3Prefix":
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    if not item["Key"].endswith("/"):
                        yield bucket, item["Key"], item["Key"][len(prefix) :].lstrip("/")
            return
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=prefix)["Body"].read())
        base = manifest[0]["prefix"]
        base_bucket, _, base_prefix = base.removeprefix("s3://").partition("/")
        for relative in manifest[1:]:
            yield base_bucket, base_prefix + relative, relative

    def _run(self, job: TransformJob) -> None:
        job.started = now()
        resources = job.request["TransformResources"]
        workers = int(resources.get("InstanceCount", 1)) * int(job.request.get("MaxConcurrentTransforms", 1))
        output = job.request["TransformOutput"]["S3OutputPath"].rstrip("/")
        out_bucket, _, out_prefix = output.removeprefix("s3://").partition("/")
        limit = int(job.request.get("MaxPayloadInMB", 6)) * 2**20
        try:
            predict = self.predictor(job.request["ModelName"], job.region)
            s3 = self.s3()

            def transform(record: tuple[str, str, str]) -> None:
                bucket, key, relative = record
                if job.stop_requested.is_set():
                    return
                body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                time.sleep(self.latency)
                try:
                    if len(body) > limit:
                        raise ValueError(f"payload of {len(body)} bytes is over MaxPayloadInMB")
                    answer = json.dumps(predict(body)).encode()
                except ValueError as err:
                    print(f"transform job {job.name}: {key}: {err}", flush=True)  # "CloudWatch"
                    with self.lock:
                        job.failed_records.append(key)
                    return
                s3.put_object(Bucket=out_bucket, Key=f"{out_prefix}/{relative}.out".lstrip("/"), Body=answer)

            with ThreadPoolExecutor(max(workers, 1), thread_name_prefix=f"transform-{job.name}") as pool:
                list(pool.map(transform, self._inputs(job)))
        except Exception as err:  # a broken job, not a record: the job fails with the reason
            job.status, job.failure, job.ended = "Failed", f"AlgorithmError: {err}", now()
            return
        if job.stop_requested.is_set():
            job.status = "Stopped"
        elif job.failed_records:
            job.status, job.failure = "Failed", RECORD_FAILURE
        else:
            job.status = "Completed"
        job.ended = now()
