"""``make bench``: a day spread over workers (``predict_shards``), against the zero-CPU stand-in.

A day of 10,000 images, predicted in real time with 32 requests in flight per task, as the DAG runs
it with 1, 2 and 4 shards on 2 worker processes (a process pool standing in for two Celery workers:
each process has imported the operators before the clock starts, as a worker has):

- 1 shard: ``batch_predict`` alone predicts and routes the day (``predict_shards=1``);
- n shards: ``predict_shard`` 0..n-1 run on the 2 processes, then ``batch_predict`` routes them all.

Wall time, images/s and the ratio to 1 shard, side by side from one run: the three in turn, twice
over (``--rounds``), each figure the mean of its rounds (the machine's CPU-bound speed drifts
within minutes, so the baseline is measured between the others); the stand-in answers
``InvokeEndpoint`` after ``--latency`` seconds and keeps the shards' files in memory. Prints a table
and writes ``bench-output/shards.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

sys.path[:0] = [str(Path(__file__).resolve().parent)]
from bench_predict import ROOT, SETTINGS, connect, start_standin, table  # noqa: E402

DAY = "2026-12-01"
IMAGES = 10_000
SHARDS = (1, 2, 4)
WORKERS = 2
CONCURRENCY = 32


def warm_worker(url: str) -> None:
    """A worker process ready for tasks: the connection set, the operators imported."""
    sys.path[:0] = [str(ROOT / "plugins")]
    connect(url)
    import active_learning.operators.predict  # noqa: F401


def run_task(shard: int | None, shards: int) -> tuple[float, dict[str, Any]]:
    """One task in this process: ``predict_shard`` ``shard``, or ``batch_predict`` (``shard=None``)."""
    from active_learning.operators.predict import BatchPredictOperator, PredictShardOperator

    common = {"settings": SETTINGS, "day": DAY, "concurrency": CONCURRENCY, "aws_conn_id": "bench"}
    if shard is None:
        operator: Any = BatchPredictOperator(task_id="batch_predict", shards=shards, **common)
    else:
        operator = PredictShardOperator(task_id="predict_shard", shard=shard, shards=shards, **common)
    started = time.perf_counter()
    result = operator.execute({"ti": MagicMock()})
    return time.perf_counter() - started, result


def mean_of(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from the rounds of one shard count: the mean of each time, images/s from it."""
    row = {"shards": rounds[0]["shards"], "images": rounds[0]["images"], "rounds": len(rounds)}
    for name in ("seconds", "predict_seconds", "route_seconds"):
        row[name] = round(sum(r[name] for r in rounds) / len(rounds), 2)
    row["images_per_second"] = round(row["images"] / row["seconds"], 1)
    row["each_round_images_per_second"] = [r["images_per_second"] for r in rounds]
    return row


def run_day(pool: ProcessPoolExecutor, shards: int) -> dict[str, Any]:
    """The day with ``shards`` shards on the pool's processes; the routing task on one of them."""
    started = time.perf_counter()
    predict_seconds = 0.0
    if shards > 1:
        # as the scheduler queues mapped tasks: all at once, each worker takes the next when free
        for _ in pool.map(run_task, range(shards), [shards] * shards):
            pass
        predict_seconds = time.perf_counter() - started
    route_seconds, result = pool.submit(run_task, None, shards).result()
    wall = time.perf_counter() - started
    return {
        "shards": shards,
        "images": result["predicted"],
        "seconds": round(wall, 2),
        "predict_seconds": round(predict_seconds, 2),
        "route_seconds": round(route_seconds if shards > 1 else 0.0, 2),
        "images_per_second": round(result["predicted"] / wall, 1),
    }


def describe(row: dict[str, Any]) -> str:
    timing = f"{row['seconds']} s ({row['predict_seconds']} predicting, {row['route_seconds']} routing)"
    each = ", ".join(str(rate) for rate in row["each_round_images_per_second"])
    return f"{timing} = {row['images_per_second']} images/s ({each}), {row['ratio_to_one_shard']}x one shard"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, default=0.05, help="InvokeEndpoint round trip (seconds)")
    parser.add_argument("--images", type=int, default=IMAGES, help="the day's images")
    parser.add_argument("--rounds", type=int, default=2, help="each shard count this many times, in turn")
    parser.add_argument("--output", type=Path, default=ROOT / "bench-output")
    args = parser.parse_args()
    started = time.monotonic()
    standin, url = start_standin(args.latency, {DAY: {"count": args.images}})
    try:
        context = get_context("spawn")  # fresh interpreters, as worker processes are
        with ProcessPoolExecutor(WORKERS, context, initializer=warm_worker, initargs=(url,)) as pool:
            for _ in pool.map(run_task, [0] * WORKERS, [WORKERS] * WORKERS):  # warm-up: clients, pools
                pass
            measured = [run_day(pool, shards) for _ in range(args.rounds) for shards in SHARDS]
    finally:
        standin.terminate()
        standin.wait()
    rows = [mean_of([row for row in measured if row["shards"] == shards]) for shards in SHARDS]
    one = rows[0]["images_per_second"]
    for row in rows:
        row["ratio_to_one_shard"] = round(row["images_per_second"] / one, 2)
    report = {
        "latency_seconds": args.latency,
        "workers": WORKERS,
        "concurrency_per_task": CONCURRENCY,
        "rows": rows,
        "seconds": round(time.monotonic() - started, 1),
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "shards.json").write_text(json.dumps(report, indent=2))
    print(table([(f"{row['shards']} shard(s), {row['images']} images", describe(row)) for row in rows]))
    print(f"\n{report['seconds']} s; written to {args.output / 'shards.json'}")


if __name__ == "__main__":
    main()
