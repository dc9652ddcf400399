"""Issue 19: ``make airflow EXECUTOR=celery`` (PostgreSQL, Redis, the CeleryExecutor, two workers).

Starts it as a user would, beside the default stack (SQLite, LocalExecutor), both on free ports and
at once (one wall time for both), backfills the 3 seeded days in each, and checks that every day
succeeded on Celery, that one day's tasks ran on both workers, that the days wrote what the
LocalExecutor's days wrote (the Celery stack predicts each day in 2 shards, ``predict_shards``: the
routing must come out as one task's), and that a cleared task reruns on a worker; then ``make airflow-stop``
leaves no process, no listening socket (PostgreSQL's and Redis's included) and no data folder.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import boto3
import psutil
import pytest

from tests.system.helpers import (
    TERMINAL,
    RunningStack,
    leftovers,
    runs,
    start_stack,
    stop_stack,
    task_instances,
    wait_for,
)
from tools.seed import BUCKET, PREFIX
from tools.stack import CELERY_WORKERS, DAG_ID, seeded_days

pytestmark = [pytest.mark.stack, pytest.mark.timeout(1200)]

# What differs between two runs of the same days whatever the executor: times, and what depends on
# the order in which things happened. The local AWS's reviewers draw their box jitter from one
# random sequence in the order the loops are answered, so a manifest's box coordinates (and the
# mAP of a model trained on them) vary; a day trains on every label written so far, or not at all
# when an earlier training took its labels (so its training, cost and tasks depend on which days
# finished first), and which day's model wins the endpoint's compare-and-swap too.
TIMES = {"created", "written_at", "creation-date"}
SHARDS = 2
ORDER_DEPENDENT_SUMMARY = {"training", "validation_map", "gate", "serving_model", "endpoint_config", "tasks"}


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, RunningStack]]:
    """The Celery stack and the default one, started at once as ``make airflow`` starts them."""
    homes = {
        "celery": tmp_path_factory.mktemp("celery") / "airflow",
        "local": tmp_path_factory.mktemp("local") / "airflow",
    }
    options = {"celery": ("--executor", "celery"), "local": ()}
    env = {"celery": {"AL_PREDICT_SHARDS": str(SHARDS)}, "local": {}}
    with ThreadPoolExecutor(2) as pool:
        futures = {
            name: pool.submit(start_stack, home, None, *options[name], env=env[name])
            for name, home in homes.items()
        }
        started = {name: future.result() for name, future in futures.items()}
    try:
        yield started
    finally:
        for running in started.values():  # make airflow-stop
            if running.process.poll() is None:
                stop_stack(running)
    for running in started.values():
        assert running.process.returncode == 0, running.log("scheduler")[-3000:]
        assert leftovers(running) == []


@pytest.fixture(scope="module")
def backfills(stacks: dict[str, RunningStack]) -> dict[str, Any]:
    """The seeded days backfilled in both stacks at once, run to the end."""
    days = seeded_days(datetime.now(UTC).date())
    started = time.monotonic()
    for running in stacks.values():
        running.api.backfill(DAG_ID, days[0], days[-1])
        running.api.unpause(DAG_ID)

    def finished(running: RunningStack) -> list[dict[str, Any]] | None:
        current = runs(running, DAG_ID)
        return current if len(current) == len(days) and {r["state"] for r in current} <= TERMINAL else None

    found = {name: wait_for(lambda r=r: finished(r), 900, f"{name}: 3 runs") for name, r in stacks.items()}
    seconds = time.monotonic() - started
    print(f"\nthe 3-day backfill in both stacks at once: {seconds:.0f} s")
    return {"days": days, "runs": found}


def s3_client(stack: RunningStack) -> Any:
    session = boto3.session.Session(
        aws_access_key_id="system", aws_secret_access_key="system", region_name="us-east-1"
    )
    return session.client("s3", endpoint_url=stack.aws_url)


def day_outputs(stack: RunningStack, day: str) -> dict[str, Any]:
    """Every object the day wrote under ``runs/<day>/``, with what may differ left out; lines sorted
    (the predictions of a day are written as their requests finish)."""
    s3 = s3_client(stack)
    prefix = f"{PREFIX}/runs/{day}/"
    keys = [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        for item in page.get("Contents", [])
    ]
    outputs: dict[str, Any] = {}
    for key in keys:
        text = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
        name = key.removeprefix(prefix)
        if name.endswith(".json"):
            outputs[name] = comparable(name, json.loads(text))
        else:
            lines = [comparable(name, json.loads(line)) for line in text.splitlines() if line.strip()]
            outputs[name] = sorted(lines, key=lambda line: json.dumps(line, sort_keys=True))
    return outputs


def comparable(name: str, document: dict[str, Any]) -> dict[str, Any]:
    kept = {key: value for key, value in document.items() if key not in TIMES}
    if name == "summary.json":
        kept = {key: value for key, value in kept.items() if key not in ORDER_DEPENDENT_SUMMARY}
        kept["cost"] = kept["cost"]["reviews"]  # not the training's
    if name == "augmented.manifest":  # the boxes' classes and count, not their jittered coordinates
        labels = kept["a2i-retraining"]
        kept["a2i-retraining"] = sorted(box["class_id"] for box in labels["annotations"])
        kept["a2i-retraining-metadata"] = {
            key: value for key, value in kept["a2i-retraining-metadata"].items() if key not in TIMES
        }
    return kept


def test_a_backfill_on_celery_runs_on_both_workers_and_writes_what_the_local_executor_writes(
    stacks: dict[str, RunningStack], backfills: dict[str, Any]
) -> None:
    celery, local = stacks["celery"], stacks["local"]
    state = json.loads((celery.home / "stack.json").read_text())
    # the components, the two workers, PostgreSQL and Redis, each a process of its own
    components = {"api-server", "scheduler", "dag-processor", "triggerer", "postgres", "redis"}
    assert components <= set(state["pids"])
    assert all(psutil.pid_exists(state["pids"][worker]) for worker in CELERY_WORKERS)
    environ = psutil.Process(state["pids"]["scheduler"]).environ()
    assert environ["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert environ["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    assert not (celery.home / "airflow.db").exists()  # no SQLite

    for name, found in backfills["runs"].items():
        assert [run["state"] for run in found] == ["success"] * 3, (name, celery.log("scheduler")[-3000:])
        assert [run["run_type"] for run in found] == ["backfill"] * 3

    hosts_by_day = {}
    for run in backfills["runs"]["celery"]:
        path = f"/dags/{DAG_ID}/dagRuns/{quote(run['dag_run_id'], safe='')}/taskInstances"
        shards = [ti for ti in celery.api("GET", path)["task_instances"] if ti["task_id"] == "predict_shard"]
        assert sorted((ti["map_index"], ti["state"]) for ti in shards) == [(0, "success"), (1, "success")]
        print(f"{run['dag_run_id']}: predict_shard on {[ti['hostname'] for ti in shards]}")
        ran = [
            ti
            for ti in task_instances(celery.api, DAG_ID, run["dag_run_id"]).values()
            if ti["state"] == "success"
        ]
        assert {ti["hostname"] for ti in ran} <= set(CELERY_WORKERS), run["dag_run_id"]
        assert all(ti["pid"] for ti in ran), run["dag_run_id"]
        hosts_by_day[run["dag_run_id"]] = sorted({ti["hostname"] for ti in ran})
        print(f"{run['dag_run_id']}: {[(ti['task_id'], ti['hostname'], ti['pid']) for ti in ran]}")
    assert sorted(CELERY_WORKERS) in hosts_by_day.values(), hosts_by_day

    for day in backfills["days"]:
        on_celery, on_local = day_outputs(celery, day.isoformat()), day_outputs(local, day.isoformat())
        shard_files = {name for name in on_celery if name.startswith("shards/")}
        assert shard_files == {f"shards/{shard}-of-{SHARDS}.jsonl" for shard in range(SHARDS)}, day
        sharded = sum(len(on_celery.pop(name)) for name in shard_files)
        assert sharded == len(on_local["predictions.jsonl"]) + len(on_local.get("quarantine.jsonl", [])), day
        assert on_celery.keys() == on_local.keys(), day
        written = {"predictions.jsonl", "human-loops.jsonl", "augmented.manifest", "summary.json"}
        assert written <= set(on_celery), day
        for name in on_celery:
            assert on_celery[name] == on_local[name], f"{day} {name}"


def test_a_cleared_task_reruns_on_a_celery_worker(
    stacks: dict[str, RunningStack], backfills: dict[str, Any]
) -> None:
    celery = stacks["celery"]
    run = backfills["runs"]["celery"][0]
    task = "start_human_loops"  # idempotent: the rerun finds the day's loops and starts none
    first = task_instances(celery.api, DAG_ID, run["dag_run_id"])[task]
    celery.api(
        "POST",
        f"/dags/{DAG_ID}/clearTaskInstances",
        {
            "dry_run": False,
            "dag_run_id": run["dag_run_id"],
            "task_ids": [task],
            "include_downstream": False,
            "only_failed": False,
        },
    )

    def rerun() -> dict[str, Any] | None:
        ti = task_instances(celery.api, DAG_ID, run["dag_run_id"])[task]
        return ti if ti["state"] == "success" and ti["try_number"] > first["try_number"] else None

    again = wait_for(rerun, 300, f"{task} rerun")
    assert again["hostname"] in CELERY_WORKERS
    assert again["pid"] != first["pid"]
    path = f"/dags/{DAG_ID}/dagRuns/{quote(run['dag_run_id'], safe='')}"
    wait_for(lambda: celery.api("GET", path)["state"] == "success", 120, "the cleared run back to success")
    print(f"\n{task} reran: try {first['try_number']} -> {again['try_number']} on {again['hostname']}")
