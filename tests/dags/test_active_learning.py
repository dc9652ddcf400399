"""DAG integrity: the daily DAG loads, wires every step, and processes the day that just ended."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pendulum
import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.providers.common.compat.sdk import AirflowFailException
from airflow.serialization.encoders import coerce_to_core_timetable
from airflow.timetables.base import TimeRestriction

from active_learning.hooks.retries import client_config
from active_learning.operators.predict import BatchPredictOperator
from active_learning.settings import LoopSettings, setting_schemas

ROOT = Path(__file__).parents[2]
DAGS = ROOT / "dags"


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=str(DAGS))


@pytest.fixture(scope="module")
def dag(dagbag: DagBag):
    return dagbag.dags["active_learning"]


def test_no_import_errors(dagbag: DagBag) -> None:
    assert dagbag.import_errors == {}
    assert list(dagbag.dags) == ["active_learning"]


def test_task_graph_chains_every_step(dag) -> None:
    downstream = {task.task_id: sorted(task.downstream_task_ids) for task in dag.tasks}
    assert downstream == {
        "deploy_model": ["batch_predict", "day_summary", "failed_day"],
        "create_human_review_workflow": ["batch_predict", "day_summary", "failed_day", "start_human_loops"],
        "batch_predict": ["day_summary", "failed_day", "start_human_loops"],
        "start_human_loops": ["day_summary", "failed_day", "wait_for_human_loops"],
        "wait_for_human_loops": [
            "augmented_manifest",
            "day_summary",
            "evaluation_gate",
            "failed_day",
            "incremental_training",
        ],
        "augmented_manifest": ["day_summary", "evaluation_gate", "failed_day", "incremental_training"],
        "incremental_training": ["day_summary", "evaluation_gate", "failed_day", "update_endpoint"],
        "evaluation_gate": ["approve_update", "day_summary", "failed_day"],
        "approve_update": ["day_summary", "failed_day", "update_endpoint"],
        "update_endpoint": ["day_summary", "failed_day"],
        "day_summary": ["failed_day"],
        "failed_day": [],
    }


def test_operator_classes(dag) -> None:
    classes = {task.task_id: type(task).__name__ for task in dag.tasks}
    assert classes == {
        "deploy_model": "DeployModelOperator",
        "create_human_review_workflow": "CreateHumanReviewWorkflowOperator",
        "batch_predict": "BatchPredictOperator",
        "start_human_loops": "StartHumanLoopsOperator",
        "wait_for_human_loops": "HumanLoopSensor",
        "augmented_manifest": "AugmentedManifestOperator",
        "incremental_training": "IncrementalTrainingOperator",
        "evaluation_gate": "EvaluationGateOperator",
        "approve_update": "OptionalApprovalOperator",
        "update_endpoint": "UpdateEndpointOperator",
        "day_summary": "DaySummaryOperator",
        "failed_day": "FailedDayOperator",
    }


def test_dag_conventions(dag) -> None:
    assert dag.catchup is False
    assert {"active-learning", "sagemaker", "a2i"} <= set(dag.tags)
    assert dag.doc_md
    assert "backfill" in dag.doc_md
    assert all(task.retries >= 1 for task in dag.tasks if task.task_id != "failed_day")
    assert dag.get_task("wait_for_human_loops").deferrable is True


SECTION = ("incremental_training", "evaluation_gate", "approve_update", "update_endpoint")


def test_no_day_waits_for_another(dag) -> None:
    """Issue 15.1: no depends_on_past chain through the review wait; a late day blocks nobody."""
    assert not any(task.depends_on_past or task.wait_for_downstream for task in dag.tasks)


def test_train_gate_and_update_are_serialized_by_one_pool_per_endpoint(dag) -> None:
    """Issue 15.1: one slot for the section; its later steps outrank a new day's training."""
    pools = {dag.get_task(task_id).pool for task_id in SECTION}
    assert pools == {"active_learning__active-learning-od"}
    assert {task.pool for task in dag.tasks if task.task_id not in SECTION} == {"default_pool"}
    assert {str(dag.get_task(task_id).weight_rule) for task_id in SECTION} == {"absolute"}
    weights = [dag.get_task(task_id).priority_weight for task_id in SECTION]
    assert weights == sorted(set(weights))


def test_training_runs_only_after_a_wait_that_succeeded(dag) -> None:
    """Issue 15.3: a wait failed or timed out with on_timeout=fail: no training, no update that day."""
    training = dag.get_task("incremental_training")
    assert training.trigger_rule == "all_success"
    assert {"wait_for_human_loops", "augmented_manifest"} <= training.upstream_task_ids


def test_any_failed_task_makes_a_failed_dag_run(dag) -> None:
    """Issue 7.4: Airflow fails a DagRun only through a failed leaf; the harvest (all_done) and a
    skipped step could leave every leaf green, so every task reaches the failed_day leaf."""
    failed_day = dag.get_task("failed_day")
    assert [task.task_id for task in dag.tasks if not task.downstream_task_ids] == ["failed_day"]
    assert failed_day.trigger_rule == "one_failed"
    assert failed_day.retries == 0
    assert failed_day.upstream_task_ids == {t.task_id for t in dag.tasks} - {"failed_day"}


def test_answers_are_harvested_even_when_the_wait_failed(dag) -> None:
    assert dag.get_task("augmented_manifest").trigger_rule == "all_done"


def test_runs_waiting_for_reviewers_never_make_the_scheduler_skip_a_day(dag) -> None:
    review_timeout_hours = dag.get_task("wait_for_human_loops").timeout / 3600
    assert dag.max_active_runs * 24 > review_timeout_hours + 24


def test_a_run_without_a_data_interval_processes_the_day_before_it_ran(dag) -> None:
    class Run:
        run_after = pendulum.datetime(2026, 11, 27, 9, 30, tz="UTC")

    from airflow.sdk.execution_time.context import MacrosAccessor

    template = dag.get_template_env().from_string(dag.get_task("batch_predict").day)
    assert template.render(data_interval_start=None, dag_run=Run(), macros=MacrosAccessor()) == "2026-11-26"
    # Airflow 3 leaves the key out of the context of such a run; strict templates must not raise
    assert template.render(dag_run=Run(), macros=MacrosAccessor()) == "2026-11-26"


def test_console_links_on_tasks_that_create_aws_resources(dag) -> None:
    def links(task_id: str) -> set[str]:
        return {link.name for link in dag.get_task(task_id).operator_extra_links}

    assert "SageMaker endpoint" in links("deploy_model")
    assert "SageMaker endpoint" in links("update_endpoint")
    # the review backend's page (A2I's workflow in the console, the Label Studio project)
    assert "Review" in links("create_human_review_workflow")
    assert "Review" in links("start_human_loops")
    assert "Training job" in links("incremental_training")


def test_the_scheduled_run_processes_the_day_that_just_ended(dag) -> None:
    start = pendulum.datetime(2026, 11, 25, tz="UTC")
    timetable = coerce_to_core_timetable(dag.timetable)  # what the scheduler runs
    info = timetable.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=start, latest=None, catchup=True),
    )
    # the run for 2026-11-25 fires at midnight ending that day and covers that day
    assert info.data_interval.start == start
    assert info.data_interval.end == pendulum.datetime(2026, 11, 26, tz="UTC")
    assert info.run_after == pendulum.datetime(2026, 11, 26, tz="UTC")
    # a backfill or manual run for the same logical date gets the same interval, hence the same day
    interval = timetable.infer_manual_data_interval(run_after=pendulum.datetime(2026, 11, 26, 0, tz="UTC"))
    assert interval.start == start
    rendered = dag.get_template_env().from_string(dag.get_task("batch_predict").day)
    assert rendered.render(data_interval_start=info.data_interval.start) == "2026-11-25"


def test_settings_template_renders_to_valid_settings(dag) -> None:
    params = {name: param.value for name, param in dag.params.items()}
    params.update(
        bucket="my-bucket",
        role_arn="arn:aws:iam::123456789012:role/A2IRole",
        workteam_arn="arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/reviewers",
    )
    template = dag.get_task("batch_predict").settings
    rendered = dag.get_template_env().from_string(template).render(params=params)
    settings = LoopSettings.from_mapping(json.loads(rendered))
    assert settings.bucket == "my-bucket"
    assert settings.threshold == 0.5
    assert len(settings.class_names) == 20
    assert settings.max_reviews is None


def test_params_are_the_loop_settings_fields(dag) -> None:
    """One source: every Param is a LoopSettings field with its default, type, bounds, description."""
    params = {
        name: {**param.schema, "default": param.value, "description": param.description}
        for name, param in dag.params.items()
    }
    assert params == setting_schemas()
    assert params["threshold"]["maximum"] == 1


def test_the_initial_model_reaches_deploy_model_through_the_settings_only(dag) -> None:
    deploy = dag.get_task("deploy_model")
    assert not hasattr(deploy, "initial_model_data_url")
    assert deploy.settings == dag.get_task("batch_predict").settings


def test_a_misspelled_param_in_the_run_conf_fails_naming_the_close_match(dag) -> None:
    params = {name: param.value for name, param in dag.params.items()}
    params.update(
        bucket="my-bucket",
        role_arn="arn:aws:iam::123456789012:role/A2IRole",
        workteam_arn="arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/reviewers",
        treshold=0.3,  # what dag_run.conf adds to params
    )
    rendered = (
        dag.get_template_env().from_string(dag.get_task("batch_predict").settings).render(params=params)
    )
    with pytest.raises(AirflowFailException, match="did you mean 'threshold'"):
        _ = BatchPredictOperator(task_id="t", settings=rendered, day="2026-11-25").loop_settings


def run_python(code: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'plugins'}:{ROOT}", **env},
        timeout=120,
    )
    return result.stdout.strip().splitlines()[-1]


def test_parsing_does_not_import_the_sagemaker_sdk() -> None:
    code = (
        "import sys, runpy; runpy.run_path('dags/active_learning.py');"
        "print(sorted(m for m in sys.modules if m == 'sagemaker' or m.startswith('sagemaker.')))"
    )
    assert run_python(code) == "[]"


def test_param_defaults_come_from_environment_variables() -> None:
    code = (
        "import runpy; dag = runpy.run_path('dags/active_learning.py')['active_learning'];"
        "print(dag.params['bucket'], dag.params['threshold'], dag.params['task_count'])"
    )
    assert (
        run_python(code, AL_BUCKET="env-bucket", AL_THRESHOLD="0.3", AL_TASK_COUNT="2") == "env-bucket 0.3 2"
    )


def test_predict_shards_spread_the_days_prediction_over_mapped_tasks() -> None:
    code = textwrap.dedent(
        """
        import json, runpy
        dag = runpy.run_path('dags/active_learning.py')['active_learning']
        shard, route = dag.get_task('predict_shard'), dag.get_task('batch_predict')
        print(json.dumps({
            "mapped": type(shard).__name__, "shards": shard.expand_input.value["shard"],
            "kwargs": {k: shard.partial_kwargs.get(k) for k in ("shards",)},
            "upstream": sorted(shard.upstream_task_ids),
            "route_upstream": sorted(route.upstream_task_ids),
            "route_shards": route.shards,
            "failed_day": "predict_shard" in dag.get_task("failed_day").upstream_task_ids,
            "summarized": dag.get_task("day_summary").summarized_tasks,
        }, default=str))
        """
    )
    out = json.loads(run_python(code, AL_PREDICT_SHARDS="3"))

    assert out["mapped"] == "MappedOperator"
    assert out["shards"] == [0, 1, 2]
    assert out["kwargs"]["shards"] == 3
    assert out["upstream"] == ["create_human_review_workflow", "deploy_model"]
    assert out["route_upstream"] == ["predict_shard"]
    assert out["route_shards"] == 3
    assert out["failed_day"] is True
    assert "predict_shard" not in out["summarized"]
    assert "batch_predict" in out["summarized"]


def test_one_shard_keeps_batch_predict_predicting_the_day(dag) -> None:
    assert "predict_shard" not in dag.task_ids
    assert dag.get_task("batch_predict").shards == 1


def test_a_bad_environment_value_keeps_the_dag_and_fails_every_task_naming_the_variable() -> None:
    code = textwrap.dedent(
        """
        import json
        from airflow.dag_processing.dagbag import DagBag
        from airflow.providers.common.compat.sdk import AirflowFailException

        bag = DagBag(dag_folder="dags")
        dag = bag.dags["active_learning"]
        messages = []
        for task in dag.tasks:  # what the task runner calls before execute()
            try:
                task._pre_execute_hook({})
            except AirflowFailException as err:
                messages.append(str(err))
        threshold = dag.params.get_param("threshold")
        print(json.dumps(
            [bag.import_errors, threshold.value, threshold.description, dag.max_active_runs, messages]
        ))
        """
    )
    output = run_python(
        code,
        AL_THRESHOLD="abc",
        AL_REVIEW_TIMEOUT_HOURS="ten",
        # issue 15.10: these raised in the sensor's constructor and removed the whole DAG
        AL_MIN_COMPLETED_FRACTION="2",
        AL_REVIEW_ON_TIMEOUT="explode",
    )
    import_errors, threshold, description, max_active_runs, messages = json.loads(output)

    assert import_errors == {}
    assert threshold == 0.5  # the built-in default stands in, the Params stay valid
    assert "INVALID AL_THRESHOLD='abc'" in description  # the trigger form says which variable is wrong
    assert max_active_runs == 12  # review timeout 240 h, its default
    assert len(messages) == 12  # every task fails before it runs
    assert all("AL_THRESHOLD='abc' is not valid for setting threshold" in message for message in messages)
    for problem in (
        "AL_REVIEW_TIMEOUT_HOURS='ten' is not valid for setting review_timeout_hours",
        "AL_MIN_COMPLETED_FRACTION='2' is not valid for setting min_completed_fraction: must be > 0 and <= 1",
        "AL_REVIEW_ON_TIMEOUT='explode' is not valid for setting review_on_timeout: must be one of "
        "continue, fail",
    ):
        assert all(problem in message for message in messages), (problem, messages[0])


# Imported where they run, never at DAG parse (make bench measures the parse itself). `requests` is
# not listed: the Amazon provider's base operator loads it for every AWS DAG.
HEAVY_AT_PARSE = (
    "sagemaker",  # about 2 s
    "PIL",  # the image checks of batch_predict
    "numpy",
    "aiohttp",  # the HTTP provider's async hook, under Label Studio's
    "airflow.providers.http.hooks.http",
    "active_learning.review_backends.a2i",
    "active_learning.review_backends.label_studio",
    "torch",
    "pandas",
)


def test_dag_parses_quickly_enough_for_the_scheduler() -> None:
    """Not a timing assert: the parse must not pull in the heavy modules that make it slow."""
    code = (
        "import sys, runpy; runpy.run_path('dags/active_learning.py');"
        f"print([m for m in {HEAVY_AT_PARSE!r} if m in sys.modules])"
    )
    assert run_python(code) == "[]"


def test_every_aws_task_retries_with_the_package_config(dag) -> None:
    """Issue 7.16: tasks on botocore's default (legacy, 5 attempts) ran out under throttling."""
    aws_tasks = [task for task in dag.tasks if hasattr(task, "aws_conn_id")]
    assert len(aws_tasks) == 10
    for task in aws_tasks:
        assert task.botocore_config["retries"] == client_config()["retries"], task.task_id


# Under Airflow itself: `airflow dags test` on a fresh metadata database ----------------------------
AIRFLOW = str(Path(sys.executable).parent / "airflow")
SETTINGS_ENV = {
    "AL_BUCKET": "my-bucket",
    "AL_ROLE_ARN": "arn:aws:iam::123456789012:role/A2IRole",
    "AL_WORKTEAM_ARN": "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/reviewers",
}


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("airflow")
    subprocess.run(
        [AIRFLOW, "db", "migrate"], env=airflow_env(home), capture_output=True, check=True, timeout=180
    )
    return home


def airflow_env(home: Path, **settings: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "AL_"))}
    return {
        **env,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # nothing listens on the discard port: a task that reached AWS would fail differently
        "AIRFLOW_CONN_AWS_DEFAULT": "aws://a:b@/?region_name=us-east-1&endpoint_url=http%3A%2F%2F127.0.0.1%3A9",
        "PYTHONPATH": str(ROOT / "plugins"),
        **SETTINGS_ENV,
        **settings,
    }


def run_one_day(home: Path, **settings: str) -> tuple[str, dict[str, tuple[str, int]]]:
    """``airflow dags test`` for one day; its log and each task's (state, try number)."""
    result = subprocess.run(
        [AIRFLOW, "dags", "test", "active_learning", "2026-11-26"],
        env=airflow_env(home, **settings),
        capture_output=True,
        text=True,
        # a retry would wait AL_RETRY_DELAY_SECONDS (300 s) first: the timeout catches it
        timeout=240,
        check=False,
    )
    with sqlite3.connect(home / "airflow.db") as db:
        run_id = db.execute("SELECT run_id FROM dag_run ORDER BY id DESC LIMIT 1").fetchone()[0]
        states = db.execute(
            "SELECT task_id, state, try_number FROM task_instance WHERE run_id = ?", (run_id,)
        )
        return result.stdout + result.stderr, {task: (state, tries) for task, state, tries in states}


FAILED_ONCE = {
    # the tasks that read the settings, each tried once; the manifest runs after failures
    # and the day's record (all_done), training does not (all_success), and failed_day fails the run
    "deploy_model": ("failed", 1),
    "create_human_review_workflow": ("failed", 1),
    "augmented_manifest": ("failed", 1),
    "day_summary": ("failed", 1),
    "failed_day": ("failed", 1),
}


def test_a_wrong_setting_fails_each_task_once_without_retries(airflow_home: Path) -> None:
    log, tasks = run_one_day(airflow_home, AL_VALIDATION_MANIFEST_URI="s3://elsewhere/validation.manifest")

    assert {task: state for task, state in tasks.items() if state[0] == "failed"} == FAILED_ONCE
    assert all(state == "upstream_failed" for state, _ in (tasks[t] for t in tasks if t not in FAILED_ONCE))
    assert "up_for_retry" not in log
    assert log.count("setting validation_manifest_uri 's3://elsewhere/validation.manifest' is outside") >= 3


def test_a_bad_environment_value_fails_the_run_naming_the_variable(airflow_home: Path) -> None:
    log, tasks = run_one_day(airflow_home, AL_THRESHOLD="abc")

    assert {task: state for task, state in tasks.items() if state[0] == "failed"} == FAILED_ONCE
    assert "up_for_retry" not in log
    assert log.count("AL_THRESHOLD='abc' is not valid for setting threshold") >= 3


# A loops file: one DAG per loop ------------------------------------------------------------------
LOOPS_FILE = """
loops:
  - name: pets
    settings:
      bucket: pets-bucket
      endpoint_name: pets-od
      alert_sns_topic_arn: "arn:aws:sns:us-east-1:123456789012:al"
      late_review_hours: 12
  - name: cars
    settings: {bucket: cars-bucket, endpoint_name: cars-od, threshold: 7}
"""


def test_a_loops_file_makes_one_dag_per_loop_and_a_bad_entry_fails_only_its_own_tasks(tmp_path: Path) -> None:
    (tmp_path / "loops.yaml").write_text(LOOPS_FILE)
    code = textwrap.dedent(
        """
        import json
        from airflow.dag_processing.dagbag import DagBag
        from airflow.providers.common.compat.sdk import AirflowFailException
        bag = DagBag(dag_folder="dags")
        out = {"errors": bag.import_errors, "dags": list(bag.dags)}
        for dag_id, dag in bag.dags.items():
            failures = []
            for task in dag.tasks:
                try:
                    task._pre_execute_hook({})
                except AirflowFailException as err:
                    failures.append(str(err))
            out[dag_id] = {
                "failures": failures,
                "pool": dag.get_task("incremental_training").pool,
                "tags": dag.tags,
                "outlets": [a.uri for t in dag.tasks for a in t.outlets],
                "callback": type(dag.on_failure_callback).__name__ if dag.on_failure_callback else None,
                "deadline": [str(d.interval) for d in (dag.deadline or [])],
            }
        print(json.dumps(out, default=str))
        """
    )
    out = json.loads(run_python(code, AL_LOOPS_FILE=str(tmp_path / "loops.yaml")))

    assert out["errors"] == {}
    assert sorted(out["dags"]) == ["active_learning__cars", "active_learning__pets"]
    pets, cars = out["active_learning__pets"], out["active_learning__cars"]
    assert pets["failures"] == []
    assert len(cars["failures"]) == 12
    assert "loop cars: setting threshold=7" in cars["failures"][0]
    assert (pets["pool"], cars["pool"]) == ("active_learning__pets-od", "active_learning__cars-od")
    assert "loop:pets" in pets["tags"]
    assert sorted(pets["outlets"]) == [
        "s3://pets-bucket/active-learning/runs",
        "x-sagemaker-endpoint://pets-od",
    ]
    # alerts where configured: SNS on a failed day, and a deadline alert 12 h after a run was queued
    assert (pets["callback"], pets["deadline"]) == ("SnsNotifier", ["12:00:00"])
    assert (cars["callback"], cars["deadline"]) == (None, [])
