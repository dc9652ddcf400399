"""The operators' ``get_openlineage_facets_on_complete``: what the OpenLineage provider calls after a
task ran, answered from the rendered settings and what the task kept, with no AWS call."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from airflow.providers.openlineage.extractors.manager import ExtractorManager
from airflow.sdk.api.datamodels._generated import TaskInstanceState

from active_learning.operators.endpoint import UpdateEndpointOperator
from active_learning.operators.manifest import AugmentedManifestOperator
from active_learning.operators.predict import BatchPredictOperator
from active_learning.operators.training import IncrementalTrainingOperator
from tests.unit.operators.conftest import ACCOUNT, BUCKET, INCOMING, PREFIX, REGION, RUNS, operator_kwargs

S3 = f"s3://{BUCKET}"
JOB = "active-learning-20261126-0a1b2c3d"
ARTIFACT = f"{PREFIX}/training/{JOB}/output/model.tar.gz"
ENDPOINT = (f"arn:aws:sagemaker:{REGION}:{ACCOUNT}", "endpoint/object-detection")
SUCCESS = SimpleNamespace(state=TaskInstanceState.SUCCESS)


@pytest.fixture(autouse=True)
def no_aws_call() -> Iterator[None]:
    """Any AWS request fails the test: the lineage must come from what the task already knows."""
    with mock.patch(
        "botocore.client.BaseClient._make_api_call", side_effect=AssertionError("an AWS call for lineage")
    ):
        yield


def rendered(**settings: Any) -> dict[str, Any]:
    """The operators' arguments with ``settings`` as the DAG renders it: a JSON string."""
    kwargs = operator_kwargs(**settings)
    return {**kwargs, "settings": json.dumps(kwargs["settings"])}


def pairs(datasets: list[Any]) -> list[tuple[str, str]]:
    return [(dataset.namespace, dataset.name) for dataset in datasets]


def test_batch_predict() -> None:
    op = BatchPredictOperator(task_id="batch_predict", **rendered())
    lineage = op.get_openlineage_facets_on_complete(SUCCESS)
    assert pairs(lineage.inputs) == [(S3, INCOMING), ENDPOINT]
    assert pairs(lineage.outputs) == [(S3, f"{RUNS}predictions.jsonl"), (S3, f"{RUNS}quarantine.jsonl")]


def test_augmented_manifest() -> None:
    op = AugmentedManifestOperator(task_id="augmented_manifest", **rendered())
    lineage = op.get_openlineage_facets_on_complete(SUCCESS)
    assert pairs(lineage.inputs) == [
        (S3, f"{RUNS}human-loops.jsonl"),
        (S3, f"{RUNS}predictions.jsonl"),
        (S3, f"{PREFIX}/a2i-output/"),
    ]
    assert pairs(lineage.outputs) == [(S3, f"{RUNS}augmented.manifest")]


def test_training_uses_the_job_description_its_result_read() -> None:
    op = IncrementalTrainingOperator(task_id="incremental_training", **rendered())
    op.trained_job = {
        "InputDataConfig": [
            {"ChannelName": "train", "DataSource": {"S3DataSource": {"S3Uri": f"{S3}/t/train.manifest"}}},
            {"ChannelName": "model", "DataSource": {"S3DataSource": {"S3Uri": f"{S3}/seed/model.tar.gz"}}},
        ],
        "ModelArtifacts": {"S3ModelArtifacts": f"{S3}/{ARTIFACT}"},
    }
    lineage = op.get_openlineage_facets_on_complete(SUCCESS)
    assert pairs(lineage.inputs) == [
        (S3, f"{RUNS}augmented.manifest"),
        (S3, "t/train.manifest"),
        (S3, "seed/model.tar.gz"),
    ]
    assert pairs(lineage.outputs) == [(S3, ARTIFACT)]


def test_training_skipped_before_any_job_names_nothing() -> None:
    op = IncrementalTrainingOperator(task_id="incremental_training", **rendered())
    lineage = op.get_openlineage_facets_on_complete(SimpleNamespace(state=TaskInstanceState.SKIPPED))
    assert (lineage.inputs, lineage.outputs) == ([], [])


def test_update_endpoint_reads_the_training_result() -> None:
    training = json.dumps({"training_job_name": JOB, "model_data_url": f"{S3}/{ARTIFACT}"})  # rendered XCom
    kwargs = {key: value for key, value in rendered().items() if key != "day"}  # it has no day
    op = UpdateEndpointOperator(task_id="update_endpoint", training=training, **kwargs)
    lineage = op.get_openlineage_facets_on_complete(SUCCESS)
    assert pairs(lineage.inputs) == [(S3, ARTIFACT)]
    assert pairs(lineage.outputs) == [ENDPOINT]


def test_the_provider_finds_the_method_and_keeps_the_datasets() -> None:
    """Through the provider's own extractor manager, as its listener calls it."""
    op = BatchPredictOperator(task_id="batch_predict", **rendered())
    lineage = ExtractorManager().extract_metadata(
        dagrun=SimpleNamespace(run_id="manual__2026-11-27"),
        task=op,
        task_instance_state=TaskInstanceState.SUCCESS,
        task_instance=SUCCESS,
    )
    assert pairs(lineage.inputs) == [(S3, INCOMING), ENDPOINT]
    assert len(lineage.outputs) == 2
