"""Benchmark of BatchPredictOperator on the embedded local AWS: concurrency and memory.

Runs the real operator (real boto3 clients through an Airflow connection) against the emulator in
a separate process, and reports ratios measured in the same run:
- wall time of one day of N images at concurrency 1 vs 8;
- peak Python memory (tracemalloc) of the operator for N vs 10*N images.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from unittest.mock import MagicMock
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]

import boto3  # noqa: E402

from emulator.model import train  # noqa: E402
from emulator.scenes import DEMO_CLASSES, make_scenes  # noqa: E402

BUCKET = "bench-bucket"
SETTINGS = {
    "bucket": BUCKET,
    "role_arn": "arn:aws:iam::123456789012:role/Bench",
    "workteam_arn": "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/bench",
    "endpoint_name": "bench-endpoint",
    "class_names": list(DEMO_CLASSES),
}


def start_emulator(folder: Path, latency: float) -> tuple[str, Path]:
    state = folder / "emulator.json"
    log = folder / "log"
    url = subprocess.run(
        [
            sys.executable,
            "-m",
            "emulator",
            "start",
            "--state-file",
            str(state),
            "--log-file",
            str(log),
            "--invoke-latency",
            str(latency),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return url, state


def prepare(url: str, days: dict[str, int]) -> None:
    kw = {
        "endpoint_url": url,
        "region_name": "us-east-1",
        "aws_access_key_id": "b",
        "aws_secret_access_key": "b",
    }
    s3, sagemaker = boto3.client("s3", **kw), boto3.client("sagemaker", **kw)
    s3.create_bucket(Bucket=BUCKET)
    model = train(None, make_scenes(2, 100, list(DEMO_CLASSES)), list(DEMO_CLASSES))
    s3.put_object(Bucket=BUCKET, Key="model.tar.gz", Body=model.to_artifact())
    sagemaker.create_model(
        ModelName="bench-model",
        ExecutionRoleArn=SETTINGS["role_arn"],
        PrimaryContainer={"Image": "local", "ModelDataUrl": f"s3://{BUCKET}/model.tar.gz"},
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName="bench-config",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "bench-model",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m4.xlarge",
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName="bench-endpoint", EndpointConfigName="bench-config")
    scenes = make_scenes(7, 50, list(DEMO_CLASSES))
    for day, count in days.items():
        for index in range(count):
            s3.put_object(
                Bucket=BUCKET,
                Key=f"active-learning/incoming/{day}/{index:05d}.jpg",
                Body=scenes[index % len(scenes)][0],
            )


def run_day(day: str, concurrency: int) -> tuple[float, float, dict]:
    from active_learning.operators.predict import BatchPredictOperator

    operator = BatchPredictOperator(
        task_id="bench", settings=SETTINGS, day=day, concurrency=concurrency, aws_conn_id="bench"
    )
    tracemalloc.start()
    started = time.perf_counter()
    result = operator.execute({"ti": MagicMock()})
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return elapsed, peak / 2**20, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.05, help="InvokeEndpoint round trip to simulate")
    args = parser.parse_args()
    small, large = args.images, args.images * 10
    with tempfile.TemporaryDirectory() as folder:
        url, state = start_emulator(Path(folder), args.latency)
        try:
            os.environ["AIRFLOW_CONN_BENCH"] = (
                f"aws://b:b@/?region_name=us-east-1&endpoint_url={quote(url, safe='')}"
            )
            prepare(url, {"2026-11-01": small, "2026-11-02": large})
            run_day("2026-11-01", 8)  # warm-up: model load, clients
            serial, _, _ = run_day("2026-11-01", 1)
            parallel, small_peak, _ = run_day("2026-11-01", 8)
            _, large_peak, result = run_day("2026-11-02", 8)
        finally:
            subprocess.run(
                [sys.executable, "-m", "emulator", "stop", "--state-file", str(state)],
                cwd=ROOT,
                capture_output=True,
                check=False,
            )
    report = {
        "images": small,
        "invoke_latency_seconds": args.latency,
        "concurrency_1_seconds": round(serial, 2),
        "concurrency_8_seconds": round(parallel, 2),
        "speedup_8_vs_1": round(serial / parallel, 2),
        f"peak_MiB_{small}_images": round(small_peak, 2),
        f"peak_MiB_{large}_images": round(large_peak, 2),
        "peak_ratio_10x_images": round(large_peak / small_peak, 2),
        "large_day_result": {k: result[k] for k in ("images", "predicted", "quarantined", "to_review")},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
