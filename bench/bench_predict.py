"""``make bench``: what ``BatchPredictOperator`` itself costs, measured against a zero-CPU stand-in.

The real operator (real boto3 clients through an Airflow connection) runs against ``standin.py``,
which answers S3 and ``InvokeEndpoint`` with canned bytes after a fixed latency, so the figures are
the operator's own overhead, not an endpoint's or a store's CPU. All ratios come from one run:

- throughput at concurrency 1, 8, 32 and 64, as a fraction of the limit (concurrency / latency);
- the ratio to a sequential loop like the seed's notebook (get the image, invoke, next) on the same images;
- memory in separate processes, without tracemalloc for the timings: peak RSS, and peak Python heap
  (tracemalloc, another process), for N and 10 x N images, and for a day of 150 MiB non-image objects;
- Batch Transform against real time on the embedded local AWS for a day of 10,000 images: wall time
  and the operator's API calls per operation (``bench_transform.py``).

Prints a table and writes ``bench-output/bench.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]  # the product, and the emulator for the transform pass

SETTINGS = {
    "bucket": "bench-bucket",
    "role_arn": "arn:aws:iam::123456789012:role/Bench",
    "workteam_arn": "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/bench",
    "endpoint_name": "bench-endpoint",
    "class_names": ["bicycle", "car", "dog", "person"],
}
CONCURRENCY = (1, 8, 32, 64)
SEQUENTIAL_IMAGES = 100
NON_IMAGES = {"count": 8, "size_mib": 150}
# The transform pass: a day of this many images; the emulator's transform parallelism is
# TRANSFORM_INSTANCES x TRANSFORM_CONCURRENT workers, real time keeps the DAG's 8 requests in flight.
TRANSFORM_DAY_IMAGES = 10_000
TRANSFORM_INSTANCES = 4
TRANSFORM_CONCURRENT = 4
REALTIME_CONCURRENCY = 8


def throughput_day(concurrency: int) -> str:
    return f"2026-10-{CONCURRENCY.index(concurrency) + 1:02d}"


def images_for(concurrency: int) -> int:
    """Enough images for about 8 s at the limit (fixed costs, such as creating clients, then weigh
    little), at least 200."""
    return max(200, 160 * concurrency)


def days(memory_images: int) -> dict[str, dict[str, int]]:
    spec = {throughput_day(c): {"count": images_for(c)} for c in CONCURRENCY}
    spec["2026-11-01"] = {"count": memory_images}
    spec["2026-11-02"] = {"count": 10 * memory_images}
    spec["2026-11-03"] = NON_IMAGES
    return spec


def start_standin(latency: float, spec: dict[str, Any]) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "standin.py"),
            "--latency",
            str(latency),
            "--days",
            json.dumps(spec),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def connect(url: str) -> None:
    os.environ["AIRFLOW_CONN_BENCH"] = f"aws://b:b@/?region_name=us-east-1&endpoint_url={quote(url, safe='')}"
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "b")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "b")


def run_operator(day: str, concurrency: int) -> tuple[float, dict[str, Any]]:
    """Wall seconds and result of the operator on ``day``; the result gains ``cpu_seconds``, the
    process's CPU time (all threads) while it ran."""
    from active_learning.operators.predict import BatchPredictOperator

    operator = BatchPredictOperator(
        task_id="bench", settings=SETTINGS, day=day, concurrency=concurrency, aws_conn_id="bench"
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    result = operator.execute({"ti": MagicMock()})
    return time.perf_counter() - started, {**result, "cpu_seconds": time.process_time() - cpu_started}


def sequential_loop(url: str, day: str, images: int) -> tuple[float, float]:
    """The seed's way: one image at a time, get it, invoke the endpoint, next. Wall and CPU seconds."""
    import boto3

    kwargs = {"endpoint_url": url, "region_name": "us-east-1"}
    s3, runtime = boto3.client("s3", **kwargs), boto3.client("sagemaker-runtime", **kwargs)
    started, cpu_started = time.perf_counter(), time.process_time()
    keys = [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=SETTINGS["bucket"], Prefix=f"active-learning/incoming/{day}/"
        )
        for item in page.get("Contents", [])
    ][:images]
    for key in keys:
        body = s3.get_object(Bucket=SETTINGS["bucket"], Key=key)["Body"].read()
        runtime.invoke_endpoint(EndpointName=SETTINGS["endpoint_name"], Body=body, ContentType="image/jpeg")
    return time.perf_counter() - started, time.process_time() - cpu_started


def memory_child(day: str, concurrency: int, heap: bool) -> None:
    """In a fresh process: the operator on one day; prints its peak RSS or peak Python heap."""
    from active_learning.operators.predict import BatchPredictOperator  # imports out of the measure

    BatchPredictOperator(task_id="warm", settings=SETTINGS, day=day, aws_conn_id="bench")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if heap:
        tracemalloc.start()
    _, result = run_operator(day, concurrency)
    report = {"images": result["images"], "rss_before_mib": round(before, 1)}
    if heap:
        report["heap_peak_mib"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 2)
    else:
        report["rss_peak_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(report))


def measure_memory(url: str, day: str, concurrency: int) -> dict[str, Any]:
    def child(heap: bool) -> dict[str, Any]:
        command = [
            sys.executable,
            __file__,
            "--memory-child",
            day,
            "--url",
            url,
            "--concurrency",
            str(concurrency),
        ]
        output = subprocess.run(
            command + (["--heap"] if heap else []), capture_output=True, text=True, check=True
        )
        return json.loads(output.stdout.strip().splitlines()[-1])

    return child(heap=False) | child(heap=True)


def table(rows: list[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def transform_rows(transform: dict[str, Any]) -> list[tuple[str, str]]:
    instances, per_instance = (
        transform["transform_instance_count"],
        transform["transform_max_concurrent_per_instance"],
    )
    setup = (
        f"{transform['images']} images, {transform['latency_seconds'] * 1000:.0f} ms a request; real time "
        f"{transform['realtime_concurrency']} in flight, Batch Transform {instances} instances"
        f" x {per_instance}"
    )
    rows = [("Batch Transform vs real time", setup)]
    for mode, measured in transform["modes"].items():
        calls = ", ".join(f"{name} {count}" for name, count in measured["api_calls"].items())
        rows.append(
            (f"  {mode}", f"{measured['seconds']} s; {measured['api_calls_total']} API calls ({calls})")
        )
    rows.append(
        ("  wall time, transform / real time", f"{transform['wall_time_ratio_transform_to_realtime']}x")
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, default=0.05, help="InvokeEndpoint round trip (seconds)")
    parser.add_argument("--images", type=int, default=1000, help="N of the memory pass (and 10 x N)")
    parser.add_argument("--output", type=Path, default=ROOT / "bench-output")
    parser.add_argument(
        "--transform-images",
        type=int,
        default=TRANSFORM_DAY_IMAGES,
        help="the transform pass's day (0: skip)",
    )
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=32, help=argparse.SUPPRESS)
    parser.add_argument("--heap", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        connect(args.url)
        memory_child(args.memory_child, args.concurrency, args.heap)
        return
    started = time.monotonic()
    standin, url = start_standin(args.latency, days(args.images))
    try:
        connect(url)
        run_operator(throughput_day(1), 8)  # warm-up: imports, clients, connection pools
        throughput = {}
        for concurrency in CONCURRENCY:
            elapsed, result = run_operator(throughput_day(concurrency), concurrency)
            rate = result["predicted"] / elapsed
            throughput[concurrency] = {
                "images": result["predicted"],
                "seconds": round(elapsed, 2),
                "images_per_second": round(rate, 1),
                "fraction_of_limit": round(rate / (concurrency / args.latency), 3),
                # one Python process runs the task: near 1.0, it is CPU-bound (the GIL), not waiting
                "cpu_ms_per_image": round(1000 * result["cpu_seconds"] / result["predicted"], 2),
                "cpu_share_of_one_core": round(result["cpu_seconds"] / elapsed, 2),
            }
        sequential_seconds, sequential_cpu = sequential_loop(url, throughput_day(1), SEQUENTIAL_IMAGES)
        sequential = SEQUENTIAL_IMAGES / sequential_seconds
        memory = {
            "N": measure_memory(url, "2026-11-01", 32),
            "10N": measure_memory(url, "2026-11-02", 32),
            "non_images": measure_memory(url, "2026-11-03", 32),
        }
    finally:
        standin.terminate()
        standin.wait()
    transform = None
    args.output.mkdir(parents=True, exist_ok=True)
    if args.transform_images:
        from bench_transform import compare_modes

        transform = compare_modes(
            args.transform_images,
            REALTIME_CONCURRENCY,
            TRANSFORM_INSTANCES,
            TRANSFORM_CONCURRENT,
            args.latency,
            args.output,
        )
    report = {
        "latency_seconds": args.latency,
        "throughput": throughput,
        "sequential_images_per_second": round(sequential, 1),
        # the two boto3 calls per image alone (no checks, no routing, no threads)
        "sequential_cpu_ms_per_image": round(1000 * sequential_cpu / SEQUENTIAL_IMAGES, 2),
        "ratio_to_sequential": {
            c: round(t["images_per_second"] / sequential, 1) for c, t in throughput.items()
        },
        "memory": memory,
        "rss_ratio_10N_to_N": round(memory["10N"]["rss_peak_mib"] / memory["N"]["rss_peak_mib"], 3),
        "heap_ratio_10N_to_N": round(memory["10N"]["heap_peak_mib"] / memory["N"]["heap_peak_mib"], 3),
        "non_image_day": f"{NON_IMAGES['count']} objects of {NON_IMAGES['size_mib']} MiB",
        "transform_vs_realtime": transform,
        "seconds": round(time.monotonic() - started, 1),
    }
    (args.output / "bench.json").write_text(json.dumps(report, indent=2))
    rows = [
        (
            f"concurrency {c}, {t['images']} images",
            f"{t['images_per_second']} images/s = {t['fraction_of_limit']:.0%} of the limit "
            f"({c / args.latency:.0f}/s); {report['ratio_to_sequential'][c]}x the sequential loop; "
            f"CPU {t['cpu_ms_per_image']} ms/image, {t['cpu_share_of_one_core']:.0%} of a core",
        )
        for c, t in throughput.items()
    ]
    rows.append(
        (
            "sequential loop (the seed's)",
            f"{sequential:.1f} images/s; CPU {report['sequential_cpu_ms_per_image']} ms/image",
        )
    )
    for name, label in (
        ("N", f"{args.images} images"),
        ("10N", f"{10 * args.images} images"),
        ("non_images", report["non_image_day"]),
    ):
        m = memory[name]
        rss = f"peak RSS {m['rss_peak_mib']} MiB (after imports {m['rss_before_mib']})"
        rows.append((f"memory, {label}", f"{rss}; peak heap {m['heap_peak_mib']} MiB"))
    rows.append(("10N / N", f"RSS {report['rss_ratio_10N_to_N']}x, heap {report['heap_ratio_10N_to_N']}x"))
    if transform is not None:
        rows += transform_rows(transform)
    print(table(rows))
    print(f"\n{report['seconds']} s; written to {args.output / 'bench.json'}")


if __name__ == "__main__":
    main()
