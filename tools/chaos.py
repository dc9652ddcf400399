"""``make chaos``: the standing fault suite of the ``active_learning`` DAG on the local AWS.

Three scenarios on the same seeded days, each with its own emulator (moto reset), a proxy
(:class:`tools.faults.FaultProxy`) that the Airflow AWS connection's ``endpoint_url`` points at,
and its own Airflow home; days run with ``airflow dags test`` as in ``make demo`` (reviewers
answer without noise, so that two runs label alike):

1. **clean**: no fault, no kill; its outputs are the reference, and its proxy counts the AWS
   requests each task makes (used to place the kills).
2. **faulted**: the proxy throttles ~25 % of requests and answers 5 % with a 500/503 before and
   5 % after forwarding (the request took effect, the client retries). Every task of
   :data:`KILLED_TASKS` is killed once, the kills spread over the days in DAG order (each on a day
   the clean run ran the task: a day with too few new labels trains nothing): ``SIGKILL`` of
   the ``airflow dags test`` process group while the task is ``running`` or ``deferred`` in the
   metadata DB, after a seeded random share (5-60 %) of the requests it made in the clean run: a
   count of requests, unlike a time, lands inside the task however much the faults slow it. After
   each kill the day is run again, 1 s later. The review timeout is 3 minutes (not the demo's
   hour), so that a sensor that never sees its loops shows up as lost labels, not as a hang.
3. **failed day**: the first day, with the proxy answering ``AccessDenied`` for its
   ``incoming/<day>/`` prefix, so that ``batch_predict`` fails for good: the DagRun must end
   ``failed`` and ``airflow dags test`` exit non-zero.
4. **lineage** (seven days of their own, every gate open so that each trained model is put on the
   endpoint): a **late day** (its reviewers hold their answers while the next day runs: that day
   must train and update; answered, the late day trains from the model serving then), a **cleared
   update** (``airflow tasks test`` of a past day's ``update_endpoint`` after a newer model took
   over: nothing may change), a **rolled-back update** (an alarm rolls it back: a failed DagRun, the
   model before still serving) followed by two days that train from the serving model and update,
   **on_timeout=fail** (half the reviews late: a failed day that keeps its answered labels and
   neither trains nor updates) and **the same day twice at once** (two Airflow homes: 0
   duplicates). Runs at once use Airflow homes of their own on the same local AWS. Last, every update
   that landed must have put on a model trained from the model it replaced.

How a rerun works: ``airflow dags test <dag> <logical date>`` first clears the task instances of
that logical date, then *deletes* the DagRun it finds for it and creates a new one (run id
``manual__<now>``), so every task runs again with ``try_number`` 1: what an operator's rerun of a
day does, with no memory of the killed tries in Airflow (only in S3 and in AWS itself). No clear
is needed. A killed run's task instances stay ``running`` in the DB until the rerun deletes them,
so the kill watcher only looks at DagRuns created after it started. A day that fails stops the
faulted scenario: its outputs, not the next day's, need a look.

Each day of the faulted run is compared with the same day of the clean run:

- duplicates: loops for the same image in one day, training jobs of a day beyond the first,
  manifest lines with the same ``source-ref``;
- lost labels: loops Completed in the emulator whose image has no line in the day's manifest;
- outputs match: routed images, loop names, manifest lines (``creation-date`` dropped), training
  job names, the endpoint's config and model after the day;
- requests faulted (the proxy's counters) and tasks retried (``try_number`` - 1 over the final
  run's task instances; kills are counted apart).

Goals: 0 duplicates, 0 lost labels, identical outputs, every planned kill made while its task ran,
every faulted day a successful DagRun, the failed day a failed one. The table is printed and
written to ``<output>/chaos.json`` (the proxy's counters per operation to
``proxy-counters.json``, each scenario's Airflow output to ``<scenario>/airflow.log``); the exit
status is 1 when a goal is missed. The failed day and the lineage scenarios need nothing of the
others: they run in a second process meanwhile (``--processes 1``: one after the other). Every process
and server started here is stopped on the way out (also on Ctrl-C or SIGTERM, the second process's
too), and the suite checks that none of its ports still listens.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import date, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from emulator.server import Emulator
from tools.airflow_runs import (
    AIRFLOW,
    ENDPOINT,
    REVIEWER,
    ROOT,
    TIMINGS,
    DayBlocked,
    airflow_env,
    logical_date,
    print_table,
    run_process,
    terminate,
)
from tools.faults import FaultProxy, FaultRates
from tools.seed import BUCKET, PREFIX, seed
from world.scenes import EASY_WORLD

DAG_ID = "active_learning"
KILLED_TASKS = (
    "deploy_model",
    "create_human_review_workflow",
    "batch_predict",
    "start_human_loops",
    "wait_for_human_loops",
    "augmented_manifest",
    "incremental_training",
    "evaluation_gate",
    "update_endpoint",
)
ACTIVE_STATES = ("running", "deferred")  # the sensor and training defer while they wait
COMPARED = ("routed", "loops", "manifest", "training_jobs", "endpoint_config", "model")
POLL_SECONDS = 0.02
# The 4-class world: every seeded day routes enough images to train, so that every task runs.
WORLD = EASY_WORLD
REVIEW_TIMEOUT_HOURS = 0.05
ports: list[int] = []  # every port a server of this suite listened on: all closed at the end


@dataclass
class Kill:
    """A planned SIGKILL while ``task`` runs, after ``after_requests`` of its AWS requests.

    The point is drawn as ``fraction`` of the requests the task made in the clean run: a count of
    requests, unlike a time, lands inside the task however much faults slow it down.
    """

    task: str
    fraction: float
    after_requests: int = 0
    landed: bool = False
    note: str = ""


@dataclass
class RunResult:
    returncode: int | None
    killed: bool = False
    timed_out: bool = False


@dataclass
class DayResult:
    scenario: str
    day: str
    dag_run: str
    returncode: int | None
    faulted: int = 0
    retried: int = 0
    kills: list[Kill] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    mismatched: list[str] = field(default_factory=list)


class Stage:
    """One scenario's emulator, the fault proxy in front of it, and an Airflow home.

    The clean scenario has a proxy too, faulting nothing: it counts each task's requests.
    """

    def __init__(
        self, name: str, output: Path, emulator: Emulator, proxy: FaultProxy, **settings: str
    ) -> None:
        self.name = name
        self.output = output
        self.folder = output / name
        self.folder.mkdir(parents=True)
        self.home = self.folder / "airflow"
        self.home.mkdir()
        self.log = self.folder / "airflow.log"
        self.emulator = emulator
        self.proxy = proxy
        self.env = airflow_env(self.home, proxy.url, WORLD.classes)
        # the demo's 1 h review timeout would hide a sensor that never sees its loops for an hour:
        # give up after 3 minutes instead (the loops answer within seconds), so it shows as lost labels
        self.env["AL_REVIEW_TIMEOUT_HOURS"] = str(REVIEW_TIMEOUT_HOURS)
        self.env.update(settings)
        self.settings = settings

    def sibling(self, name: str, **settings: str) -> Stage:
        """Another Airflow home on the same local AWS (its own metadata DB: runs at once, as two
        workers would make them), with this one's settings and ``settings``."""
        other = Stage(
            f"{self.name}-{name}", self.output, self.emulator, self.proxy, **{**self.settings, **settings}
        )
        other.migrate()
        return other

    @property
    def database(self) -> Path:
        return self.home / "airflow.db"

    def query(self, sql: str, *parameters: Any) -> list[tuple[Any, ...]]:
        """Read the metadata DB (sqlite) while Airflow writes it; a locked read is tried again."""
        if not self.database.exists():
            return []
        for _ in range(50):
            try:
                with contextlib.closing(
                    sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=2)
                ) as connection:
                    return connection.execute(sql, parameters).fetchall()
            except sqlite3.OperationalError:
                time.sleep(0.05)
        raise RuntimeError(f"cannot read {self.database}")

    def runs_of(self, day: date) -> list[tuple[str, str]]:
        """``(run_id, state)`` of the DagRuns processing ``day``, oldest first."""
        return [
            (run_id, state)
            for run_id, state in self.query(
                "SELECT run_id, state FROM dag_run WHERE dag_id = ? AND logical_date LIKE ? ORDER BY id",
                DAG_ID,
                f"{logical_date(day)}%",
            )
        ]

    def task_instances(self, run_id: str) -> dict[str, tuple[str | None, int]]:
        """``{task_id: (state, try_number)}`` of a DagRun."""
        rows = self.query(
            "SELECT task_id, state, try_number FROM task_instance WHERE dag_id = ? AND run_id = ?",
            DAG_ID,
            run_id,
        )
        return {task: (state, tries) for task, state, tries in rows}

    def migrate(self) -> None:
        if run_process([AIRFLOW, "db", "migrate"], self.env, self.log) != 0:
            raise RuntimeError(f"airflow db migrate failed; see {self.log}")

    def run_day(
        self,
        day: date,
        timeout: float,
        kill: Kill | None = None,
        requests_by_task: Counter[str] | None = None,
    ) -> RunResult:
        """``airflow dags test`` for ``day``: killed as planned, or when it outlasts ``timeout``.

        :param kill: the kill to make while this run goes.
        :param requests_by_task: counts the proxy's requests made while each task was active.
        """
        earlier = {run_id for run_id, _ in self.runs_of(day)}
        result = RunResult(None)

        def watch(process: subprocess.Popen[bytes]) -> None:
            deadline = time.monotonic() + timeout
            armed = kill is not None
            seen = self.proxy.total_requests()
            target_started_at: int | None = None  # the request count when the target was first seen
            while process.poll() is None:
                if time.monotonic() > deadline:
                    os.killpg(process.pid, signal.SIGKILL)
                    result.timed_out = True
                    return
                states = self._states_in_new_run(day, earlier)
                requests = self.proxy.total_requests()
                active = [task for task, state in states.items() if state in ACTIVE_STATES]
                if requests_by_task is not None and len(active) == 1:
                    requests_by_task[active[0]] += requests - seen
                seen = requests
                if armed and kill is not None:
                    state = states.get(kill.task)
                    if target_started_at is None and state in ACTIVE_STATES:
                        target_started_at = requests
                    if target_started_at is not None and state not in ACTIVE_STATES:
                        kill.note = f"{kill.task} ended ({state}) before {kill.after_requests} requests"
                        armed = False  # the run goes on, unkilled
                    elif (
                        target_started_at is not None and requests - target_started_at >= kill.after_requests
                    ):
                        os.killpg(process.pid, signal.SIGKILL)
                        kill.landed = result.killed = True
                        kill.note = (
                            f"killed {kill.task} ({state}) after {requests - target_started_at} requests"
                        )
                        return
                time.sleep(POLL_SECONDS)

        try:
            result.returncode = run_process(
                [AIRFLOW, "dags", "test", DAG_ID, logical_date(day)], self.env, self.log, watch
            )
        except DayBlocked:  # its final state says what held it (a goal missed, not a crash)
            result.timed_out = True
        return result

    def run_task(self, task: str, day: date, timeout: float) -> int | None:
        """``airflow tasks test`` of one task of the day's DagRun (what clearing it in the UI reruns)."""
        return run_process(
            [AIRFLOW, "tasks", "test", DAG_ID, task, logical_date(day)],
            self.env,
            self.log,
            lambda process: _kill_after(process, timeout),
        )

    def _states_in_new_run(self, day: date, earlier: set[str]) -> dict[str, str | None]:
        for run_id, _ in self.runs_of(day):
            if run_id not in earlier:
                return {task: state for task, (state, _) in self.task_instances(run_id).items()}
        return {}

    def final_run(self, day: date) -> tuple[str, dict[str, tuple[str | None, int]]]:
        """The state and task instances of the day's last DagRun."""
        runs = self.runs_of(day)
        if not runs:
            return "missing", {}
        run_id, state = runs[-1]
        return state, self.task_instances(run_id)


def _kill_after(process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            return
        time.sleep(POLL_SECONDS * 10)


def retried(tasks: dict[str, tuple[str | None, int]]) -> int:
    """Task tries beyond the first in a DagRun (Airflow retries, not kills)."""
    return sum(max(tries - 1, 0) for _, tries in tasks.values())


def read_lines(emulator: Emulator, key: str) -> list[str]:
    """The lines of an object under the loop's prefix; none when the day did not write it."""
    s3 = emulator.client("s3")
    try:
        return s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}/{key}")["Body"].read().decode().splitlines()
    except s3.exceptions.NoSuchKey:
        return []


def without_creation_dates(value: Any) -> Any:
    """A manifest line without its review timestamps, which differ from run to run."""
    if isinstance(value, dict):
        return {k: without_creation_dates(v) for k, v in value.items() if k != "creation-date"}
    if isinstance(value, list):
        return [without_creation_dates(item) for item in value]
    return value


def day_outputs(emulator: Emulator, day: date) -> dict[str, Any]:
    """What a day left in the local AWS: its outputs, duplicates and lost labels."""
    predictions = [json.loads(line) for line in read_lines(emulator, f"runs/{day}/predictions.jsonl")]
    loop_prefix = f"{PREFIX}-{day:%Y%m%d}-"
    loops = [loop for loop in list(emulator.a2i.loops.values()) if loop.name.startswith(loop_prefix)]
    loop_images = Counter(json.loads(loop.input_content)["taskObject"] for loop in loops)
    manifest = sorted(
        json.dumps(without_creation_dates(json.loads(line)), sort_keys=True)
        for line in read_lines(emulator, f"runs/{day}/augmented.manifest")
        if line.strip()
    )
    manifest_images = Counter(json.loads(line)["source-ref"] for line in manifest)
    completed = {json.loads(loop.input_content)["taskObject"] for loop in loops if loop.status == "Completed"}
    jobs = sorted(name for name in list(emulator.sagemaker.training_jobs) if name.startswith(loop_prefix))
    sagemaker = emulator.client("sagemaker")
    try:
        config_name = sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
        config = sagemaker.describe_endpoint_config(EndpointConfigName=config_name)
        model = config["ProductionVariants"][0]["ModelName"]
    except sagemaker.exceptions.ClientError:
        config_name = model = None
    return {
        "routed": sorted(record["source"] for record in predictions if record["review"]),
        "loops": sorted(loop.name for loop in loops),
        "loops_completed": len(completed),
        "manifest": manifest,
        "training_jobs": jobs,
        "endpoint_config": config_name,
        "model": model,
        "duplicate_loops": sum(count - 1 for count in loop_images.values()),
        "duplicate_jobs": max(len(jobs) - 1, 0),
        "duplicate_manifest_lines": sum(count - 1 for count in manifest_images.values()),
        "lost_labels": sorted(completed - set(manifest_images)),
    }


def kill_plan(days: list[date], seed_value: int, ran: dict[date, set[str]]) -> dict[date, list[Kill]]:
    """Each task of :data:`KILLED_TASKS` killed once, in DAG order, spread evenly over the days.

    A task is killed on a day the clean run ran it (``ran``), the nearest to its even share:
    a day with too few new labels trains nothing, so nothing of training and after can be killed.
    """
    dice = random.Random(seed_value)
    plan: dict[date, list[Kill]] = {day: [] for day in days}
    for index, task in enumerate(KILLED_TASKS):
        kill = Kill(task, round(dice.uniform(0.05, 0.6), 3))
        share = index * len(days) // len(KILLED_TASKS)
        candidates = [offset for offset, day in enumerate(days) if task in ran[day]]
        if not candidates:
            kill.note = f"{task} never ran in the clean run: no day to kill it on"
        chosen = min(candidates, key=lambda offset: (abs(offset - share), offset), default=share)
        plan[days[chosen]].append(kill)
    return plan


@contextlib.contextmanager
def stage(
    name: str,
    output: Path,
    rates: FaultRates,
    fault_seed: int,
    images: int,
    days: list[date],
    **settings: str,
) -> Iterator[Stage]:
    """A seeded emulator, the fault proxy in front of it and a migrated Airflow home."""
    with contextlib.ExitStack() as stack:
        # no reviewer noise: the clean and faulted runs must label alike whatever the order of answers
        emulator = stack.enter_context(Emulator(reviewer=replace(REVIEWER, noise=0.0), config=TIMINGS))
        # moto's backends are process-wide: without a reset, a stage would see the previous one's AWS
        urllib.request.urlopen(
            urllib.request.Request(f"{emulator.url}/moto-api/reset", method="POST")
        ).close()
        proxy = stack.enter_context(FaultProxy(emulator.url, rates, fault_seed))
        ports.extend(int(urlsplit(server.url).port or 0) for server in (emulator, proxy))
        seed(emulator.client("s3"), days[0], len(days), images, WORLD)
        ready = Stage(name, output, emulator, proxy, **settings)
        ready.migrate()
        yield ready


def run_clean(output: Path, days: list[date], images: int, timeout: float) -> list[DayResult]:
    results = []
    with stage("clean", output, FaultRates(), 0, images, days) as clean:
        for day in days:
            requests_by_task: Counter[str] = Counter()
            outcome = clean.run_day(day, timeout, requests_by_task=requests_by_task)
            state, tasks = clean.final_run(day)
            outputs = day_outputs(clean.emulator, day)
            outputs["requests_by_task"] = dict(requests_by_task)
            outputs["ran"] = sorted(
                task for task, (task_state, _) in tasks.items() if task_state == "success"
            )
            results.append(
                DayResult(
                    "clean",
                    day.isoformat(),
                    state,
                    outcome.returncode,
                    retried=retried(tasks),
                    outputs=outputs,
                )
            )
            print(f"clean {day}: DagRun {state}", flush=True)
    return results


def run_faulted(
    output: Path,
    days: list[date],
    images: int,
    rates: FaultRates,
    seed_value: int,
    clean: list[DayResult],
    timeout: float,
    rerun_delay: float,
) -> list[DayResult]:
    results = []
    plan = kill_plan(
        days, seed_value, {date.fromisoformat(result.day): set(result.outputs["ran"]) for result in clean}
    )
    with stage("faulted", output, rates, seed_value, images, days) as faulted:
        for day, reference in zip(days, clean, strict=True):
            before = faulted.proxy.total_faults()
            timed_out = False
            for kill in plan[day]:
                if kill.note:  # nothing to kill
                    continue
                clean_requests = reference.outputs["requests_by_task"].get(kill.task, 0)
                kill.after_requests = max(round(kill.fraction * clean_requests), min(clean_requests, 1))
                timed_out = faulted.run_day(day, timeout, kill).timed_out
                print(f"faulted {day}: {kill.note or kill.task + ' never ran'}", flush=True)
                if timed_out:
                    break
                time.sleep(rerun_delay)
            outcome = RunResult(None, timed_out=True) if timed_out else faulted.run_day(day, timeout)
            state, tasks = faulted.final_run(day)
            if outcome.timed_out:
                state = f"{state}, timed out after {timeout:.0f} s"
            outputs = day_outputs(faulted.emulator, day)
            result = DayResult(
                "faulted",
                day.isoformat(),
                state,
                outcome.returncode,
                faulted=faulted.proxy.total_faults() - before,
                retried=retried(tasks),
                kills=plan[day],
                outputs=outputs,
                mismatched=[key for key in COMPARED if outputs[key] != reference.outputs[key]],
            )
            results.append(result)
            print(f"faulted {day}: DagRun {state}, {result.faulted} requests faulted", flush=True)
            if outcome.returncode != 0:
                # a faulted day must succeed: what follows it would compare against a changed past
                print(f"faulted: not running the days after {day}", flush=True)
                break
        (output / "proxy-counters.json").write_text(json.dumps(faulted.proxy.counters(), indent=2))
    return results


def run_failed_day(output: Path, day: date, images: int, timeout: float) -> DayResult:
    """``batch_predict`` denied the day's images for good: the DagRun must end failed."""
    with stage("failed-day", output, FaultRates(), 0, images, [day]) as failing:
        failing.proxy.configure(deny=(f"{PREFIX}/incoming/{day}/",))
        outcome = failing.run_day(day, timeout)
        state, tasks = failing.final_run(day)
        print(
            f"failed day {day}: DagRun {state}, airflow dags test exit code {outcome.returncode}", flush=True
        )
        return DayResult(
            "failed day",
            day.isoformat(),
            state if not outcome.timed_out else f"{state}, timed out",
            outcome.returncode,
            faulted=failing.proxy.total_faults(),
            retried=retried(tasks),
            outputs={"tasks": {task: task_state for task, (task_state, _) in tasks.items()}},
        )


# Lineage scenarios -----------------------------------------------------------------------------------
LINEAGE_DAYS = 7
REFUSED = "another update landed since"  # update_endpoint's compare-and-swap, refusing


@dataclass
class Check:
    """One goal of a lineage scenario, what was measured, and whether it was met."""

    scenario: str
    goal: str
    measured: str
    met: bool


def serving_job(emulator: Emulator) -> str | None:
    """The training job of the model the endpoint serves (``None``: the initial model)."""
    sagemaker = emulator.client("sagemaker")
    config = sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
    model = sagemaker.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"][0][
        "ModelName"
    ]
    artifact = emulator.model_data_url("us-east-1", model)
    return next(
        (name for name, job in emulator.sagemaker.training_jobs.items() if job.artifact == artifact), None
    )


def day_jobs(emulator: Emulator, day: date) -> list[str]:
    return sorted(
        name for name in emulator.sagemaker.training_jobs if name.startswith(f"{PREFIX}-{day:%Y%m%d}-")
    )


def base_model(emulator: Emulator, job: str) -> str:
    channels = emulator.sagemaker.training_jobs[job].request["InputDataConfig"]
    return next(c["DataSource"]["S3DataSource"]["S3Uri"] for c in channels if c["ChannelName"] == "model")


def lineage_breaks(emulator: Emulator) -> list[str]:
    """Each landed update whose model was not trained from the model it replaced."""
    breaks = []
    for _, replaced, new in emulator.sagemaker.landed_updates:
        job = next(name for name, j in emulator.sagemaker.training_jobs.items() if j.artifact == new)
        if base_model(emulator, job) != replaced:
            breaks.append(f"{replaced} -> {new} ({job} was trained from {base_model(emulator, job)})")
    return breaks


def day_loops_open(emulator: Emulator, day: date) -> int:
    prefix = f"{PREFIX}-{day:%Y%m%d}-"
    return sum(
        loop.status == "InProgress"
        for name, loop in list(emulator.a2i.loops.items())
        if name.startswith(prefix)
    )


def wait_until(check: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def late_day(main: Stage, late: date, next_day: date, timeout: float) -> list[Check]:
    """The reviews of ``late`` stay open while ``next_day`` runs: it must train and update anyway."""
    prefix = f"{PREFIX}-{late:%Y%m%d}-"
    main.emulator.a2i.hold(lambda name: name.startswith(prefix))
    # the same Airflow home: a dependency of one day's tasks on the day before would show
    thread = threading.Thread(target=main.run_day, args=(late, timeout), daemon=True)
    thread.start()
    waiting = wait_until(lambda: day_loops_open(main.emulator, late) > 0, timeout)
    main.run_day(next_day, timeout)
    next_state, _ = main.final_run(next_day)
    serving = serving_job(main.emulator)
    still_open = day_loops_open(main.emulator, late)
    main.emulator.a2i.release()
    thread.join(timeout)
    late_state, _ = main.final_run(late)
    late_jobs = day_jobs(main.emulator, late)
    trained_from = base_model(main.emulator, late_jobs[0]) if late_jobs else "no job"
    next_artifact = main.emulator.sagemaker.training_jobs[serving].artifact if serving else None
    return [
        Check(
            "late day",
            f"{next_day} trains and updates while {late}'s reviews are open",
            f"{next_day}: DagRun {next_state}, serving {serving}; {late}: {still_open} loops open",
            waiting
            and next_state == "success"
            and serving in day_jobs(main.emulator, next_day)
            and still_open > 0,
        ),
        Check(
            "late day",
            f"{late}, its reviews answered, trains from the model serving then ({next_day}'s) and updates",
            f"{late}: DagRun {late_state}, {late_jobs} trained from {trained_from}; "
            f"serving {serving_job(main.emulator)}",
            late_state == "success"
            and trained_from == next_artifact
            and serving_job(main.emulator) in late_jobs,
        ),
    ]


def cleared_update(main: Stage, day: date, timeout: float) -> Check:
    """An operator clears a past day's update_endpoint after a later model took over."""
    before = serving_job(main.emulator)
    updates = len(main.emulator.sagemaker.landed_updates)
    refusals = main.log.read_text().count(REFUSED)
    returncode = main.run_task("update_endpoint", day, timeout)
    after = serving_job(main.emulator)
    landed = len(main.emulator.sagemaker.landed_updates) - updates
    refused = main.log.read_text().count(REFUSED) > refusals
    return Check(
        "clear a past update",
        f"rerunning {day}'s update_endpoint leaves the newer model serving",
        f"exit {returncode}; serving {before} before, {after} after; {landed} update(s) landed; "
        f"refused naming both models: {'yes' if refused else 'no'}",
        returncode == 0
        and before == after
        and landed == 0
        and refused
        and before not in day_jobs(main.emulator, day),
    )


def rolled_back_update(main: Stage, failed: date, later: list[date], timeout: float) -> list[Check]:
    """The update of ``failed`` rolls back (an alarm); the later days train from what serves and update."""
    before = serving_job(main.emulator)
    main.emulator.sagemaker.alarmed_updates = 1
    main.run_day(failed, timeout)
    state, _ = main.final_run(failed)
    checks = [
        Check(
            "rolled-back update",
            f"{failed}'s update rolls back: a failed DagRun, the model before it still serves",
            f"DagRun {state}; serving {before} before, {serving_job(main.emulator)} after",
            state == "failed" and serving_job(main.emulator) == before,
        )
    ]
    for day in later:
        serving = serving_job(main.emulator)
        artifact = main.emulator.sagemaker.training_jobs[serving].artifact if serving else None
        main.run_day(day, timeout)
        state, _ = main.final_run(day)
        jobs = day_jobs(main.emulator, day)
        trained_from = base_model(main.emulator, jobs[-1]) if jobs else "no job"
        checks.append(
            Check(
                "rolled-back update",
                f"{day} trains from the serving model and updates",
                f"DagRun {state}; {jobs} trained from {trained_from}; serving {serving_job(main.emulator)}",
                state == "success" and trained_from == artifact and serving_job(main.emulator) in jobs,
            )
        )
    return checks


def failed_wait(main: Stage, day: date, timeout: float) -> Check:
    """``review_on_timeout=fail`` and half the reviews late: the day keeps its labels, trains nothing."""
    prefix = f"{PREFIX}-{day:%Y%m%d}-"
    main.emulator.a2i.hold(lambda name: name.startswith(prefix) and int(name[-1], 16) % 2 == 0)
    strict = main.sibling("on-timeout-fail", AL_REVIEW_ON_TIMEOUT="fail", AL_REVIEW_TIMEOUT_HOURS="0.01")
    before = serving_job(main.emulator)
    strict.run_day(day, timeout)
    main.emulator.a2i.release()
    state, tasks = strict.final_run(day)
    lines = len(read_lines(main.emulator, f"runs/{day}/augmented.manifest"))
    return Check(
        "on_timeout=fail",
        f"{day} fails with its answered labels kept, no training, no update",
        f"DagRun {state}; {lines} manifest lines; jobs {day_jobs(main.emulator, day)}; "
        f"training {tasks.get('incremental_training', ('?',))[0]}; "
        f"serving {before} -> {serving_job(main.emulator)}",
        state == "failed"
        and lines > 0
        and not day_jobs(main.emulator, day)
        and serving_job(main.emulator) == before,
    )


def same_day_twice(main: Stage, day: date, timeout: float) -> Check:
    """Two runs of the same day at once (two homes, as two schedulers' or workers' runs would)."""
    twin = main.sibling("twin")
    threads = [
        threading.Thread(target=stage.run_day, args=(day, timeout), daemon=True) for stage in (main, twin)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    states = [stage.final_run(day)[0] for stage in (main, twin)]
    outputs = day_outputs(main.emulator, day)
    duplicates = {
        key: outputs[key] for key in ("duplicate_loops", "duplicate_jobs", "duplicate_manifest_lines")
    }
    return Check(
        "same day twice at once",
        f"two runs of {day} at once: both succeed, 0 duplicates, 0 lost labels",
        f"DagRuns {states}; {duplicates}; lost labels {len(outputs['lost_labels'])}",
        states == ["success", "success"] and not any(duplicates.values()) and not outputs["lost_labels"],
    )


def run_lineage(output: Path, first_day: date, images: int, timeout: float) -> list[Check]:
    """The lineage scenarios, on their own seeded days; every gate open, so that each trained model
    is put on the endpoint (the compare-and-swap is what is tested), and the threshold high, so that
    every day routes its budget to review (the easy world's model soon grows confident)."""
    days = [first_day + timedelta(days=offset) for offset in range(LINEAGE_DAYS)]
    checks: list[Check] = []

    def record(*made: Check) -> None:
        for check in made:
            print(f"lineage: {check.goal}: {'met' if check.met else 'MISSED'} ({check.measured})", flush=True)
        checks.extend(made)

    open_gates = {"AL_MAP_TOLERANCE": "1", "AL_THRESHOLD": "0.99"}
    with stage("lineage", output, FaultRates(), 0, images, days, **open_gates) as main:
        record(*late_day(main, days[0], days[1], timeout))
        record(cleared_update(main, days[1], timeout))
        record(*rolled_back_update(main, days[2], days[3:5], timeout))
        record(failed_wait(main, days[5], timeout))
        record(same_day_twice(main, days[6], timeout))
        breaks = lineage_breaks(main.emulator)
        record(
            Check(
                "lineage",
                "every update puts on a model trained from the one it replaces",
                f"{len(main.emulator.sagemaker.landed_updates)} updates, {len(breaks)} not: {breaks[:2]}",
                not breaks,
            )
        )
    return checks


@dataclass
class Apart:
    """The scenarios that share nothing with the clean and faulted runs: the failed day and the
    lineage days, each on a local AWS and in Airflow homes of its own."""

    output: Path
    days: list[date]
    images: int
    timeout: float
    failed_day: bool
    lineage: bool

    def run(self) -> tuple[DayResult | None, list[Check]]:
        """The failed day's result and the lineage checks."""
        failed = (
            run_failed_day(self.output, self.days[0], self.images, self.timeout) if self.failed_day else None
        )
        # days of their own, after the fault scenarios' (a stage has its own local AWS anyway)
        first_lineage_day = self.days[-1] + timedelta(days=1)
        checks = (
            run_lineage(self.output, first_lineage_day, self.images, self.timeout) if self.lineage else []
        )
        return failed, checks


def _run_apart(apart: Apart, results: Connection) -> None:
    """The second process: runs ``apart`` and sends what it found back; SIGTERM and Ctrl-C unwind it,
    stopping everything it started, as in the first."""
    signal.signal(signal.SIGTERM, terminate)
    try:
        results.send((*apart.run(), ports))
    except KeyboardInterrupt:
        pass
    finally:
        results.close()


class SecondProcess:
    """``Apart`` in a process of its own (the local AWS's backends are process-wide), stopped on the
    way out if it still runs."""

    def __init__(self, apart: Apart) -> None:
        context = multiprocessing.get_context("spawn")
        self._receiving, sending = context.Pipe(duplex=False)
        self._process = context.Process(target=_run_apart, args=(apart, sending), name="chaos-apart")
        self._process.start()
        sending.close()  # only the child's end stays open: its exit without results shows as EOF

    def result(self) -> tuple[DayResult | None, list[Check]]:
        """What ``Apart.run`` returned there; its ports join this process's, checked at the end."""
        try:
            failed, checks, its_ports = self._receiving.recv()
        except EOFError:
            self._process.join()
            raise RuntimeError(
                f"the failed-day and lineage process ended without results (exit code "
                f"{self._process.exitcode}); its traceback is above"
            ) from None
        self._process.join()  # it has sent all it had: reaped now, not when the faulted run ends
        ports.extend(its_ports)
        return failed, checks

    def __enter__(self) -> SecondProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process.is_alive():
            self._process.terminate()  # SIGTERM: it unwinds and stops its servers and Airflow runs
        self._process.join()
        self._receiving.close()


def misses(result: DayResult) -> list[str]:
    """The goals this day missed, each in words."""
    found = []
    if result.scenario == "failed day":
        if result.dag_run != "failed" or result.returncode == 0:
            found.append(
                f"batch_predict failed for good ({result.outputs['tasks'].get('batch_predict')}) but the "
                f"DagRun is {result.dag_run} and airflow dags test exited {result.returncode}: "
                "a failed day must be a failed DagRun"
            )
        return found
    if result.dag_run != "success" or result.returncode != 0:
        found.append(f"DagRun {result.dag_run}, exit code {result.returncode}")
    outputs = result.outputs
    for key in ("duplicate_loops", "duplicate_jobs", "duplicate_manifest_lines"):
        if outputs[key]:
            found.append(f"{outputs[key]} {key.replace('_', ' ')}")
    if outputs["lost_labels"]:
        found.append(f"{len(outputs['lost_labels'])} lost labels: {outputs['lost_labels'][:3]}")
    if result.mismatched:
        found.append(f"outputs differ from the clean run: {', '.join(result.mismatched)}")
    found.extend(
        f"kill missed: {kill.note or kill.task + ' never ran'}" for kill in result.kills if not kill.landed
    )
    return found


def table_row(result: DayResult) -> dict[str, Any]:
    outputs = result.outputs
    failed_day = result.scenario == "failed day"
    return {
        "scenario": result.scenario,
        "day": result.day,
        "requests_faulted": result.faulted,
        "tasks_retried": result.retried,
        "kills": f"{sum(kill.landed for kill in result.kills)}/{len(result.kills)}" if result.kills else "-",
        "dup_loops": "-" if failed_day else outputs["duplicate_loops"],
        "dup_jobs": "-" if failed_day else outputs["duplicate_jobs"],
        "dup_manifest_lines": "-" if failed_day else outputs["duplicate_manifest_lines"],
        "lost_labels": "-" if failed_day else len(outputs["lost_labels"]),
        "outputs_match": (
            "-"
            if result.scenario != "faulted"
            else "yes"
            if not result.mismatched
            else "no: " + ",".join(result.mismatched)
        ),
        "dag_run": result.dag_run,
        "failed_day_visible": ("yes" if not misses(result) else "NO") if failed_day else "-",
        "goals": "met" if not misses(result) else "MISSED",
    }


def listening_ports() -> list[int]:
    """Ports of this suite's servers that still accept connections (there must be none)."""
    still = []
    for port in ports:
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                still.append(port)
    return still


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", type=Path, default=ROOT / "chaos-output")
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--images-per-day", type=int, default=20)
    parser.add_argument("--first-day", type=date.fromisoformat, default=date(2026, 11, 23))
    parser.add_argument("--seed", type=int, default=7, help="seed of the faults and the kill points")
    parser.add_argument("--throttle", type=float, default=0.25, help="share of requests throttled")
    parser.add_argument("--error-before", type=float, default=0.05, help="500/503 without forwarding")
    parser.add_argument("--error-after", type=float, default=0.05, help="500/503 after forwarding")
    parser.add_argument("--rerun-delay", type=float, default=1.0, help="seconds between a kill and the rerun")
    parser.add_argument(
        "--run-timeout", type=float, default=300.0, help="seconds one airflow dags test may take"
    )
    parser.add_argument(
        "--scenarios",
        nargs="+",
        choices=("faults", "lineage"),
        default=["faults", "lineage"],
        help="faults: clean, faulted and failed day; lineage: the days that must not block or move back",
    )
    parser.add_argument(
        "--processes",
        type=int,
        choices=(1, 2),
        default=2,
        help="2: the failed day and the lineage scenarios run in a second process, beside clean and faulted",
    )
    args = parser.parse_args(argv)
    args.output = args.output.resolve()  # Airflow's sqlite URL needs an absolute path
    started = time.monotonic()
    signal.signal(signal.SIGTERM, terminate)
    shutil.rmtree(args.output, ignore_errors=True)
    args.output.mkdir(parents=True)
    days = [args.first_day + timedelta(days=offset) for offset in range(args.days)]
    rates = FaultRates(args.throttle, args.error_before, args.error_after)
    results: list[DayResult] = []
    checks: list[Check] = []
    missed: list[str] = []
    apart = Apart(
        args.output,
        days,
        args.images_per_day,
        args.run_timeout,
        failed_day="faults" in args.scenarios,
        lineage="lineage" in args.scenarios,
    )
    try:
        with SecondProcess(apart) if args.processes == 2 else contextlib.nullcontext() as second:
            if "faults" in args.scenarios:
                clean = run_clean(args.output, days, args.images_per_day, args.run_timeout)
                faulted = run_faulted(
                    args.output,
                    days,
                    args.images_per_day,
                    rates,
                    args.seed,
                    clean,
                    args.run_timeout,
                    args.rerun_delay,
                )
                results = [*clean, *faulted]
                missed.extend(
                    f"faulted {day}: not run, an earlier day failed" for day in days[len(faulted) :]
                )
            failed_day, checks = second.result() if second else apart.run()
            if failed_day:
                results.append(failed_day)
    except KeyboardInterrupt:
        print(f"interrupted; everything it started is stopped (listening: {listening_ports() or 'none'})")
        return 130
    left = listening_ports()
    rows = [table_row(result) for result in results]
    missed[:0] = [f"{result.scenario} {result.day}: {miss}" for result in results for miss in misses(result)]
    missed.extend(f"{check.scenario}: {check.goal}: {check.measured}" for check in checks if not check.met)
    if left:
        missed.append(f"ports still listening after the suite: {left}")
    elapsed = round(time.monotonic() - started)
    report = {
        "wall_time_seconds": elapsed,
        "settings": {**vars(args), "output": str(args.output), "first_day": args.first_day.isoformat()},
        "rates": asdict(rates),
        "table": rows,
        "lineage": [asdict(check) for check in checks],
        "missed": missed,
        "days": [asdict(result) for result in results],
    }
    (args.output / "chaos.json").write_text(json.dumps(report, indent=2, default=str))
    if rows:
        print()
        print_table(rows)
    if checks:
        print()
        print_table(
            [{"scenario": c.scenario, "goal": c.goal, "met": "met" if c.met else "MISSED"} for c in checks]
        )
    print(f"\n{len(missed)} goal(s) missed" + "".join(f"\n- {miss}" for miss in missed))
    print(f"done in {elapsed} s; details in {args.output / 'chaos.json'}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
