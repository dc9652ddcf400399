"""Batch Transform against real time for one large day on the embedded local AWS (part of ``make bench``).

``BatchPredictOperator`` predicts the same day of N images twice: ``predict_mode=realtime`` (one
``InvokeEndpoint`` per image, ``concurrency`` in flight) and ``predict_mode=batch_transform`` (one job,
``InstanceCount`` x ``MaxConcurrentTransforms`` workers in the emulator). The local AWS runs in its own
process (``python -m emulator serve``), so every botocore client of this process is the operator's
(or the set-up's, counted apart): a botocore client plugin counts their API calls per operation.
The job's own reads and writes stay inside the local AWS, as they stay inside SageMaker. Both modes
share the machine with the local AWS, so the wall times say how the modes compare here, not how
fast SageMaker is.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock, patch
from urllib.parse import quote

import boto3

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "bench-transform"
DAY = "2026-12-01"
CLASSES = ("bicycle", "car", "dog", "person")
DISTINCT_SCENES = 50  # the day's images cycle through these (generating 10,000 costs time, not insight)
PLUGIN_ENV = "BOTOCORE_EXPERIMENTAL__PLUGINS"  # botocore calls initialize_client_plugin for every new client

CALLS: Counter[str] = Counter()
_calls_lock = threading.Lock()


def initialize_client_plugin(client: Any) -> None:
    """botocore's client plugin hook: count this client's API calls (retries are not calls)."""

    def count(model: Any, **_: Any) -> None:
        with _calls_lock:
            CALLS[model.name] += 1

    client.meta.events.register("before-call", count)


def start_local_aws(latency: float, state_file: Path) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "emulator", "serve", "--invoke-latency", str(latency)]
    process = subprocess.Popen(
        [*command, "--state-file", str(state_file)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"http://\S+", line)
    if match is None:
        process.terminate()
        raise RuntimeError(f"the local AWS did not start: {line!r}")
    return process, match.group(0)


def _prepare(url: str, images: int) -> None:
    """A bucket, an endpoint serving a small trained model, and a day of ``images`` objects."""
    from world.model import train
    from world.scenes import make_scenes

    options = {"endpoint_url": url, "region_name": "us-east-1"}
    s3, sagemaker = boto3.client("s3", **options), boto3.client("sagemaker", **options)
    s3.create_bucket(Bucket=BUCKET)
    scenes = make_scenes(7, DISTINCT_SCENES, CLASSES)
    model_key = "models/bench/model.tar.gz"
    s3.put_object(Bucket=BUCKET, Key=model_key, Body=train(None, scenes, CLASSES).to_artifact())
    sagemaker.create_model(
        ModelName="bench-model",
        ExecutionRoleArn="arn:aws:iam::123456789012:role/Bench",
        PrimaryContainer={"Image": "local/od:1", "ModelDataUrl": f"s3://{BUCKET}/{model_key}"},
    )
    variant = {"VariantName": "AllTraffic", "ModelName": "bench-model", "InitialInstanceCount": 1}
    sagemaker.create_endpoint_config(
        EndpointConfigName="bench-config", ProductionVariants=[{**variant, "InstanceType": "ml.m4.xlarge"}]
    )
    sagemaker.create_endpoint(EndpointName="bench-endpoint", EndpointConfigName="bench-config")
    sagemaker.get_waiter("endpoint_in_service").wait(
        EndpointName="bench-endpoint", WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )

    def upload(index: int) -> None:
        image, _ = scenes[index % DISTINCT_SCENES]
        s3.put_object(Bucket=BUCKET, Key=f"active-learning/incoming/{DAY}/{index:06d}.jpg", Body=image)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(upload, range(images)))


def _predict(mode: str, concurrency: int, instance_count: int, max_concurrent: int) -> tuple[float, dict]:
    from active_learning.operators.predict import BatchPredictOperator

    settings = {
        "bucket": BUCKET,
        "role_arn": "arn:aws:iam::123456789012:role/Bench",
        "workteam_arn": "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/bench",
        "endpoint_name": "bench-endpoint",
        "class_names": list(CLASSES),
        "predict_mode": mode,
        "transform_instance_count": instance_count,
        "transform_max_concurrent": max_concurrent,
    }
    operator = BatchPredictOperator(
        task_id="bench",
        settings=settings,
        day=DAY,
        concurrency=concurrency,
        aws_conn_id="bench_local_aws",
        deferrable=False,
        waiter_delay=1,
        waiter_max_attempts=3600,
    )
    started = time.perf_counter()
    result = operator.execute({"ti": MagicMock()})
    return time.perf_counter() - started, result


def compare_modes(
    images: int, concurrency: int, instance_count: int, max_concurrent: int, latency: float, work: Path
) -> dict[str, Any]:
    """Wall time and the operator's API calls per operation, for each mode on the same day."""
    process, url = start_local_aws(latency, work / "local-aws.json")
    connection = f"aws://b:b@/?region_name=us-east-1&endpoint_url={quote(url, safe='')}"
    environment = {
        PLUGIN_ENV: f"bench_calls={__name__}",
        "AIRFLOW_CONN_BENCH_LOCAL_AWS": connection,
        "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "b"),
        "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "b"),
    }
    try:
        with patch.dict(os.environ, environment):
            _prepare(url, images)
            modes: dict[str, Any] = {}
            for mode in ("realtime", "batch_transform"):
                CALLS.clear()
                seconds, result = _predict(mode, concurrency, instance_count, max_concurrent)
                calls = dict(sorted(CALLS.items()))
                modes[mode] = {
                    "seconds": round(seconds, 1),
                    "predicted": result["predicted"],
                    "quarantined": result["quarantined"],
                    "to_review": result["to_review"],
                    "api_calls": calls,
                    "api_calls_total": sum(calls.values()),
                }
    finally:
        process.terminate()
        process.wait(timeout=30)
    return {
        "images": images,
        "latency_seconds": latency,
        "realtime_concurrency": concurrency,
        "transform_instance_count": instance_count,
        "transform_max_concurrent_per_instance": max_concurrent,
        "modes": modes,
        "wall_time_ratio_transform_to_realtime": round(
            modes["batch_transform"]["seconds"] / modes["realtime"]["seconds"], 2
        ),
    }
