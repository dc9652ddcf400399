"""``make bench`` (first part): what the DAG file costs the dag-processor at each parse.

Each parse runs in a fresh Python process that has already loaded what the DAG files of an AWS
deployment share (:data:`TIMED_PARSE`: the Task SDK and the Amazon provider's bases, whose ~100 ms
with boto3 any DAG on the provider pays once), then times ``runpy.run_path`` of the file: the
package's DAG, and an empty DAG (one ``EmptyOperator``) as the baseline, 7 times each, alternated,
with bytecode caches written by a first parse. What is left is the package's own cost. Then the
same file with a loops file of 1 and of 4 loops (``AL_LOOPS_FILE``): the cost of each extra loop's
DAG. Prints the medians and the differences, and writes them to ``bench-output/parse.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EMPTY_DAG = """
import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

with DAG("empty", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    EmptyOperator(task_id="nothing")
"""
# What the DAG files of an AWS deployment share, loaded (as in a dag-processor that parsed them)
# before the timed parse: the Task SDK, the Amazon provider's base operator, sensor, hooks and
# SageMaker trigger, the standard provider's approval operator, the providers' Asset URI handlers
# (the first s3:// Asset loads them) and a cron data-interval timetable.
TIMED_PARSE = """
import time, runpy, sys
import pendulum
from airflow.sdk import DAG, Asset, CronDataIntervalTimetable
import airflow.providers.standard.operators.empty, airflow.providers.standard.operators.hitl
import airflow.providers.amazon.aws.operators.base_aws, airflow.providers.amazon.aws.sensors.base_aws
import airflow.providers.amazon.aws.hooks.s3, airflow.providers.amazon.aws.hooks.sagemaker
import airflow.providers.amazon.aws.triggers.sagemaker
Asset(name="warm", uri="s3://warm/up")
with DAG("warm", schedule=CronDataIntervalTimetable("@daily", timezone="UTC"), start_date=pendulum.now()):
    pass
# as the dag-processor does before it forks a file's parse (airflow/dag_processing/manager.py): what
# is loaded so far is left out of the garbage collector's passes
import gc
gc.freeze()
started = time.perf_counter()
runpy.run_path(sys.argv[1])
print(time.perf_counter() - started)
"""
GOAL_MS = 50  # the DAG may cost at most this much over an empty one
MANY_LOOPS = 4


def loops_file(folder: Path, count: int) -> Path:
    """A loops file of ``count`` loops, each on its own bucket and endpoint."""
    path = folder / f"loops-{count}.yaml"
    entries = "".join(
        f"  - name: loop{n}\n    settings: {{bucket: bench-bucket-{n}, endpoint_name: bench-{n}}}\n"
        for n in range(count)
    )
    path.write_text("loops:\n" + entries)
    return path


def parse_seconds(dag_file: Path, bytecode: Path, loops: Path | None = None) -> float:
    # with bytecode caches, as a dag-processor parsing the file every 30 s has them after the first
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPATH=str(ROOT / "plugins"), PYTHONPYCACHEPREFIX=str(bytecode))
    env.pop("AL_LOOPS_FILE", None)
    if loops is not None:
        env["AL_LOOPS_FILE"] = str(loops)
    output = subprocess.run(
        [sys.executable, "-c", TIMED_PARSE, str(dag_file)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(output.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--output", type=Path, default=ROOT / "bench-output")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        empty = Path(folder) / "empty.py"
        empty.write_text(EMPTY_DAG)
        ours = ROOT / "dags" / "active_learning.py"
        bytecode = Path(folder) / "bytecode"
        one, many = loops_file(Path(folder), 1), loops_file(Path(folder), MANY_LOOPS)
        variants = {
            "empty": (empty, None),
            "active_learning": (ours, None),
            "loops_1": (ours, one),
            f"loops_{MANY_LOOPS}": (ours, many),
        }
        for dag_file, loops in variants.values():  # writes the bytecode caches; not measured
            parse_seconds(dag_file, bytecode, loops)
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.runs):
            for name, (dag_file, loops) in variants.items():
                times[name].append(parse_seconds(dag_file, bytecode, loops))
    medians = {name: statistics.median(values) * 1000 for name, values in times.items()}
    extra = medians["active_learning"] - medians["empty"]
    per_loop = (medians[f"loops_{MANY_LOOPS}"] - medians["loops_1"]) / (MANY_LOOPS - 1)
    result = {
        "runs": args.runs,
        "median_ms": {name: round(value, 1) for name, value in medians.items()},
        "extra_ms": round(extra, 1),
        "goal_ms": GOAL_MS,
        "met": extra <= GOAL_MS,
        "per_extra_loop_ms": round(per_loop, 1),
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "parse.json").write_text(json.dumps(result, indent=2))
    print(
        f"DAG parse, median of {args.runs} fresh processes: empty DAG {medians['empty']:.0f} ms, "
        f"active_learning {medians['active_learning']:.0f} ms: +{extra:.0f} ms "
        f"(goal: at most +{GOAL_MS} ms: {'met' if result['met'] else 'MISSED'}); a loops file of 1 loop "
        f"{medians['loops_1']:.0f} ms, of {MANY_LOOPS} loops {medians[f'loops_{MANY_LOOPS}']:.0f} ms: "
        f"+{per_loop:.0f} ms per extra loop"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
