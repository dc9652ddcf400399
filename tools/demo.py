"""``make demo``: the real ``active_learning`` DAG, run by Airflow for several days on the local AWS.

Starts the emulator, creates the bucket, trains a deliberately weak initial model on a small seed
set, uploads several days of synthetic images (with reference boxes as S3 metadata for the
reference reviewer), runs ``airflow dags test active_learning <day>`` for each day, and prints a
table per day. Everything is kept under the output folder (default ``demo-output/``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import signal
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from emulator.server import Emulator
from tools.airflow_runs import (
    AIRFLOW,
    ENDPOINT,
    REVIEWER,
    ROOT,
    TIMINGS,
    airflow_env,
    logical_date,
    print_table,
    run,
    terminate,
)
from tools.label_studio import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    PERSON_REVIEW_SETTINGS,
    LabelStudioClient,
    LabelStudioServer,
    ScriptedAnnotator,
)
from tools.learning_plot import plot_learning
from tools.seed import BUCKET, PREFIX, seed
from world import REFERENCE_METADATA
from world.evaluation import image_size, mean_average_precision
from world.model import LocalDetector
from world.scenes import WORLDS, make_scenes


def held_out_map(model: LocalDetector, held_out: list[tuple[bytes, list[dict[str, Any]]]]) -> float:
    return mean_average_precision(
        [model.predict(image) for image, _ in held_out],
        [boxes for _, boxes in held_out],
        len(model.classes),
        sizes=[image_size(image) for image, _ in held_out],
    )


def day_row(emulator: Emulator, day: date, held_out: list, reviewed: int | None = None) -> dict[str, Any]:
    """The table's row of a day: the DAG's own record of it (runs/<day>/summary.json), plus what only
    the demo knows, the serving model's mAP on held-out scenes."""
    record = json.loads(emulator.get_object(f"s3://{BUCKET}/{PREFIX}/runs/{day}/summary.json"))
    reasons = record["reasons"]
    sagemaker = emulator.client("sagemaker")
    endpoint = sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    model_url = emulator.model_data_url("us-east-1", config["ProductionVariants"][0]["ModelName"])
    serving_map = record["validation_map"]["serving"]
    return {
        "day": record["day"],
        "images": record["images"],
        "predicted_by": record["transform_job"] or "endpoint",
        # routed by the threshold (kept or over the budget), added by budget-fill, and reviewed
        "routed": sum(
            count for reason, count in reasons.items() if reason not in ("confident", "budget-fill")
        ),
        "budget_filled": reasons.get("budget-fill", 0),
        "reviewed": record["routed"],
        "loops_completed": reviewed if reviewed is not None else record["reviews"]["completed"],
        "manifest_lines": record["labels"]["converted"],
        "training_job": (record["training"] or {}).get("job_name") or "skipped",
        "gate": record["gate"]["decision"],
        "endpoint_config": endpoint["EndpointConfigName"],
        "validation_map": "-" if serving_map is None else round(serving_map, 3),
        "cost_usd": record["cost"]["total"],
        "held_out_map": round(held_out_map(emulator.load_model(model_url), held_out), 3),
    }


def start_label_studio(
    args: argparse.Namespace, emulator: Emulator, env: dict[str, str]
) -> tuple[LabelStudioServer, ScriptedAnnotator | None]:
    """A local Label Studio reviewing the DAG's days (``env`` gains its connection), and the
    scripted annotator answering its tasks unless a person reviews."""
    server = LabelStudioServer(args.output / "label-studio").start()
    env.update(server.reviewing_settings())
    print(f"Label Studio on {server.url} (log in as {ADMIN_EMAIL} / {ADMIN_PASSWORD})", flush=True)
    if args.label_studio_reviewer == "person":
        env.update(PERSON_REVIEW_SETTINGS)
        return server, None
    annotator = ScriptedAnnotator(
        LabelStudioClient(server.url, server.token), emulator.client("s3"), REFERENCE_METADATA
    )
    annotator.start()
    return server, annotator


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, default=ROOT / "demo-output")
    parser.add_argument("--days", type=int, default=6)
    parser.add_argument("--world", choices=list(WORLDS), default="demo", help="how hard the scenes are")
    parser.add_argument("--images-per-day", type=int, default=40)
    parser.add_argument("--first-day", type=date.fromisoformat, default=date(2026, 11, 23))
    parser.add_argument("--review-backend", choices=("a2i", "label_studio"), default="a2i")
    parser.add_argument(
        "--predict-mode",
        choices=("realtime", "batch_transform", "auto"),
        default="realtime",
        help="how batch_predict predicts: the endpoint, or a Batch Transform job a day",
    )
    parser.add_argument(
        "--predict-shards",
        type=int,
        default=1,
        help="real time: predict each day in this many mapped predict_shard tasks (predict_shards)",
    )
    parser.add_argument(
        "--runs-per-day",
        type=int,
        default=1,
        help="run each day this many times: a rerun of a finished day must add no review, job or line",
    )
    parser.add_argument(
        "--label-studio-reviewer",
        choices=("script", "person"),
        default="script",
        help="with label_studio: a scripted annotator answers through the API, or a person in the browser",
    )
    args = parser.parse_args(argv)
    args.output = args.output.resolve()  # Airflow's sqlite URL needs an absolute path
    # SIGTERM unwinds like Ctrl-C: the running `airflow dags test`, Label Studio and the local AWS stop
    signal.signal(signal.SIGTERM, terminate)
    started = time.monotonic()
    shutil.rmtree(args.output, ignore_errors=True)
    home = args.output / "airflow"
    home.mkdir(parents=True)
    log = args.output / "airflow.log"
    world = WORLDS[args.world]
    held_out = make_scenes(999, 200, world)
    with Emulator(reviewer=REVIEWER, config=TIMINGS) as emulator:
        print(f"local AWS on {emulator.url}; Airflow home {home}", flush=True)
        days = [args.first_day + timedelta(days=offset) for offset in range(args.days)]
        weak = seed(emulator.client("s3"), args.first_day, args.days, args.images_per_day, world)
        initial_map = round(held_out_map(weak, held_out), 3)
        print(f"initial model trained on 4 scenes: held-out mAP {initial_map}", flush=True)
        env = airflow_env(home, emulator.url, world.classes)
        env["AL_PREDICT_MODE"] = args.predict_mode
        env["AL_PREDICT_SHARDS"] = str(args.predict_shards)
        run([AIRFLOW, "db", "migrate"], env, log)
        rows: list[dict[str, Any]] = [
            {
                "day": "initial",
                "images": "-",
                "predicted_by": "-",
                "routed": "-",
                "budget_filled": "-",
                "reviewed": "-",
                "loops_completed": "-",
                "manifest_lines": "-",
                "training_job": "-",
                "gate": "-",
                "endpoint_config": "-",
                "validation_map": "-",
                "cost_usd": "-",
                "held_out_map": initial_map,
            }
        ]
        label_studio, annotator, client = None, None, None
        try:
            if args.review_backend == "label_studio":
                label_studio, annotator = start_label_studio(args, emulator, env)
                client = LabelStudioClient(label_studio.url, label_studio.token)
            for day, run_number in itertools.product(days, range(1, args.runs_per_day + 1)):
                again = f" (run {run_number} of {args.runs_per_day})" if args.runs_per_day > 1 else ""
                print(f"running active_learning for {day}{again} ...", flush=True)
                run([AIRFLOW, "dags", "test", "active_learning", logical_date(day)], env, log)
                # Label Studio's own count: whoever answered (the script or a person in the browser)
                reviewed = client.answered(day.isoformat()) if client is not None else None
                rows.append(day_row(emulator, day, held_out, reviewed))
                print_table(rows[-1:])
        finally:  # a failed day (sys.exit) stops them too
            if annotator is not None:
                annotator.stop()
            if label_studio is not None:
                label_studio.stop()
    (args.output / "summary.json").write_text(json.dumps(rows, indent=2))
    plot_learning(rows, args.output / "learning.png")
    print()
    print_table(rows)
    print(f"\ndone in {time.monotonic() - started:.0f} s; artifacts in {args.output}")


if __name__ == "__main__":
    main()
