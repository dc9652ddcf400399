"""active_learning.lineage: the OpenLineage datasets of the loop's tasks, named as the Amazon provider
names them; OpenLineage stays optional (nothing of it is imported until a method runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.providers.amazon.aws.operators.sagemaker import SageMakerBaseOperator
from airflow.sdk.api.datamodels._generated import TaskInstanceState

from active_learning.lineage import (
    augmented_manifest_lineage,
    batch_predict_lineage,
    endpoint_dataset,
    operator_lineage,
    s3_dataset,
    succeeded,
    training_lineage,
    update_endpoint_lineage,
)
from active_learning.settings import LoopSettings

ROOT = Path(__file__).parents[2]
BUCKET = "my-bucket"
DAY = date(2026, 11, 26)
RUNS = "active-learning/runs/2026-11-26"
BASE_SETTINGS = {
    "bucket": BUCKET,
    "role_arn": "arn:aws:iam::123456789012:role/A2IRole",
    "workteam_arn": "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/reviewers",
    "endpoint_name": "Object-Detection",
}
SETTINGS = LoopSettings.from_mapping(BASE_SETTINGS)
ENDPOINT = ("arn:aws:sagemaker:eu-west-1:123456789012", "endpoint/object-detection")
SUCCESS = SimpleNamespace(state=TaskInstanceState.SUCCESS)
JOB = "active-learning-20261126-0a1b2c3d"
TRAINED_JOB: dict[str, Any] = {  # the parts of DescribeTrainingJob the lineage reads
    "TrainingJobName": JOB,
    "InputDataConfig": [
        {"ChannelName": name, "DataSource": {"S3DataSource": {"S3Uri": uri}}}
        for name, uri in (
            ("train", f"s3://{BUCKET}/active-learning/training/{JOB}/input/train.manifest"),
            ("validation", f"s3://{BUCKET}/active-learning/training/{JOB}/input/validation.manifest"),
            ("model", f"s3://{BUCKET}/active-learning/training/seed/output/model.tar.gz"),
        )
    ],
    "ModelArtifacts": {
        "S3ModelArtifacts": f"s3://{BUCKET}/active-learning/training/{JOB}/output/model.tar.gz"
    },
}


def pairs(datasets: list[Any]) -> list[tuple[str, str]]:
    return [(dataset.namespace, dataset.name) for dataset in datasets]


@pytest.mark.parametrize(
    "uri",
    [
        f"s3://{BUCKET}/active-learning/runs/2026-11-26/predictions.jsonl",
        f"s3://{BUCKET}/active-learning/incoming/2026-11-26/",
        f"s3://{BUCKET}/model.tar.gz",
    ],
)
def test_s3_datasets_are_named_as_the_providers_sagemaker_operators_name_them(uri: str) -> None:
    ours, providers = s3_dataset(uri), SageMakerBaseOperator.path_to_s3_dataset(uri)
    assert (ours.namespace, ours.name) == (providers.namespace, providers.name)


def test_the_bucket_root_is_named_slash_as_the_providers_s3_assets_are() -> None:
    assert pairs([s3_dataset(f"s3://{BUCKET}/")]) == [(f"s3://{BUCKET}", "/")]


@pytest.mark.parametrize(
    ("role_arn", "namespace"),
    [
        ("arn:aws:iam::123456789012:role/A2IRole", "arn:aws:sagemaker:eu-west-1:123456789012"),
        (
            "arn:aws-us-gov:iam::210987654321:role/x/A2IRole",
            "arn:aws-us-gov:sagemaker:eu-west-1:210987654321",
        ),
    ],
)
def test_the_endpoint_is_named_by_its_arn_from_the_roles_account(role_arn: str, namespace: str) -> None:
    settings = LoopSettings.from_mapping(
        {**BASE_SETTINGS, "role_arn": role_arn, "endpoint_name": "My-Endpoint"}
    )
    dataset = endpoint_dataset(settings, "eu-west-1")
    # namespace:name is the endpoint's ARN, whose name part SageMaker writes in lower case
    assert f"{dataset.namespace}:{dataset.name}" == f"{namespace}:endpoint/my-endpoint"


@pytest.mark.parametrize(
    ("state", "done"),
    [
        (TaskInstanceState.SUCCESS, True),
        ("success", True),
        (None, True),
        (TaskInstanceState.SKIPPED, False),
        (TaskInstanceState.FAILED, False),
        (TaskInstanceState.UP_FOR_RETRY, False),
    ],
)
def test_only_a_task_that_succeeded_counts_as_having_written(state: Any, done: bool) -> None:
    assert succeeded(SimpleNamespace(state=state)) is done


def test_outputs_are_claimed_only_on_success_and_repeats_listed_once() -> None:
    uri = f"s3://{BUCKET}/a/b.jsonl"
    done = operator_lineage([uri, uri], [uri], SUCCESS)
    skipped = operator_lineage([uri], [uri], SimpleNamespace(state=TaskInstanceState.SKIPPED))
    assert (pairs(done.inputs), pairs(done.outputs)) == ([(f"s3://{BUCKET}", "a/b.jsonl")],) * 2
    assert (pairs(skipped.inputs), skipped.outputs) == ([(f"s3://{BUCKET}", "a/b.jsonl")], [])


def test_batch_predict_reads_the_days_images_and_the_endpoint_and_writes_its_two_files() -> None:
    lineage = batch_predict_lineage(SETTINGS, DAY, "eu-west-1", SUCCESS)
    assert pairs(lineage.inputs) == [(f"s3://{BUCKET}", "active-learning/incoming/2026-11-26/"), ENDPOINT]
    assert pairs(lineage.outputs) == [
        (f"s3://{BUCKET}", f"{RUNS}/predictions.jsonl"),
        (f"s3://{BUCKET}", f"{RUNS}/quarantine.jsonl"),
    ]


@pytest.mark.parametrize(
    ("backend", "answers"),
    [("a2i", [(f"s3://{BUCKET}", "active-learning/a2i-output/")]), ("label_studio", [])],
)
def test_augmented_manifest_reads_the_reviews_where_the_backend_keeps_them(
    backend: str, answers: list[tuple[str, str]]
) -> None:
    settings = LoopSettings.from_mapping({**BASE_SETTINGS, "review_backend": backend})
    lineage = augmented_manifest_lineage(settings, DAY, SUCCESS)
    assert pairs(lineage.inputs) == [
        (f"s3://{BUCKET}", f"{RUNS}/human-loops.jsonl"),
        (f"s3://{BUCKET}", f"{RUNS}/predictions.jsonl"),
        *answers,
    ]
    assert pairs(lineage.outputs) == [(f"s3://{BUCKET}", f"{RUNS}/augmented.manifest")]


def test_training_reads_the_days_manifest_and_the_jobs_channels_and_writes_the_model() -> None:
    lineage = training_lineage(SETTINGS, DAY, TRAINED_JOB, SUCCESS)
    assert pairs(lineage.inputs) == [
        (f"s3://{BUCKET}", f"{RUNS}/augmented.manifest"),
        (f"s3://{BUCKET}", f"active-learning/training/{JOB}/input/train.manifest"),
        (f"s3://{BUCKET}", f"active-learning/training/{JOB}/input/validation.manifest"),
        (f"s3://{BUCKET}", "active-learning/training/seed/output/model.tar.gz"),
    ]
    assert pairs(lineage.outputs) == [
        (f"s3://{BUCKET}", f"active-learning/training/{JOB}/output/model.tar.gz")
    ]


def test_training_that_attached_to_no_job_names_nothing() -> None:
    lineage = training_lineage(SETTINGS, DAY, None, SimpleNamespace(state=TaskInstanceState.SKIPPED))
    assert (lineage.inputs, lineage.outputs) == ([], [])


def test_update_endpoint_reads_the_trained_model_and_writes_the_endpoint() -> None:
    training = {"training_job_name": JOB, "model_data_url": TRAINED_JOB["ModelArtifacts"]["S3ModelArtifacts"]}
    lineage = update_endpoint_lineage(SETTINGS, training, "eu-west-1", SUCCESS)
    assert pairs(lineage.inputs) == [
        (f"s3://{BUCKET}", f"active-learning/training/{JOB}/output/model.tar.gz")
    ]
    assert pairs(lineage.outputs) == [ENDPOINT]
    skipped = update_endpoint_lineage(SETTINGS, training, "eu-west-1", SimpleNamespace(state="skipped"))
    assert skipped.outputs == []  # the compare-and-swap skipped: the endpoint was not touched


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'plugins'}:{ROOT}"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def test_parsing_the_dag_imports_nothing_of_openlineage_and_works_without_it() -> None:
    """Installed (as here), OpenLineage is not imported at parse; made unimportable, the DAG still
    parses and the operators and the lineage module import (their lineage methods are then never
    called: the provider is what calls them)."""
    code = """
        import json, runpy, sys

        def openlineage(name):
            return name.split(".")[0] == "openlineage" or name.startswith("airflow.providers.openlineage")

        runpy.run_path("dags/active_learning.py")
        installed = sorted(name for name in sys.modules if openlineage(name))

        class NoOpenLineage:  # as if neither the provider nor the client were installed
            def find_spec(self, name, path=None, target=None):
                if openlineage(name):
                    raise ModuleNotFoundError(f"No module named {name!r}")

        sys.meta_path.insert(0, NoOpenLineage())
        for name in [name for name in sys.modules if name.startswith("active_learning") or openlineage(name)]:
            del sys.modules[name]
        try:
            import airflow.providers.openlineage.extractors
        except ModuleNotFoundError:
            pass
        else:
            raise SystemExit("the OpenLineage provider is still importable")
        from airflow.sdk import DAG

        parsed = runpy.run_path("dags/active_learning.py")
        import active_learning.lineage
        tasks = sum(len(dag.tasks) for dag in parsed.values() if isinstance(dag, DAG))
        print(json.dumps({"installed": installed, "tasks without it": tasks}))
    """
    result = json.loads(run_python(code))
    # only what Airflow's providers manager reads of every installed provider (for the Asset URI
    # handlers); nothing of the OpenLineage client, the provider's listener or its extractors
    assert set(result["installed"]) <= {
        "airflow.providers.openlineage",
        "airflow.providers.openlineage.get_provider_info",
    }
    assert result["tasks without it"] > 0
