"""OpenLineage datasets of the loop's tasks: what each reads and writes, named as the Amazon provider does.

The operators' ``get_openlineage_facets_on_complete`` methods call the functions at the bottom; the
OpenLineage provider calls those methods after a task ran, and only when it is installed and
configured (docs/lineage.md). Without it nothing here runs: the OpenLineage classes are imported
inside the functions, never when this module is imported (the DAG file imports the operators, and
the dag-processor must not pay for a library it may not have).

Naming (docs/lineage.md):

- S3 objects and prefixes: namespace ``s3://<bucket>``, name the key (a prefix keeps its trailing
  ``/``), as the Amazon provider's SageMaker operators do (``SageMakerBaseOperator.path_to_s3_dataset``);
- the SageMaker endpoint: the provider names none, so the OpenLineage convention for AWS resources
  (AWS Glue's): namespace ``arn:<partition>:sagemaker:<region>:<account>``, name
  ``endpoint/<endpoint name>``; together they are the endpoint's ARN.

Outputs are claimed only when the task succeeded: the provider calls the same method when a task is
skipped, and when it fails (the operators define no ``..._on_failure``); inputs are reported then too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from typing import TYPE_CHECKING, Any

from active_learning.settings import LoopSettings

if TYPE_CHECKING:
    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.openlineage.extractors import OperatorLineage


def s3_dataset(uri: str) -> Dataset:
    """``s3://bucket/key`` as a dataset: namespace ``s3://bucket``, name ``key`` (as the provider does;
    the bucket root, which it would name ``""``, is ``"/"`` as in its S3 Asset conversion).

    :param uri: an S3 URI of an object or a prefix.
    """
    from airflow.providers.common.compat.openlineage.facet import Dataset

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return Dataset(namespace=f"s3://{bucket}", name=key or "/", facets={})


def endpoint_dataset(settings: LoopSettings, region: str) -> Dataset:
    """The loop's SageMaker endpoint as a dataset, its namespace and name making up its ARN.

    The account and partition are the execution role's: SageMaker only accepts a role of its own
    account (``iam:PassRole``), so no STS call is needed to learn them.

    :param settings: the loop settings (``endpoint_name``, ``role_arn``).
    :param region: the region of the task's AWS connection.
    """
    from airflow.providers.common.compat.openlineage.facet import Dataset

    _, partition, _, _, account, _ = settings.role_arn.split(":", 5)
    # lower case, as SageMaker writes endpoint names in their ARNs
    return Dataset(
        namespace=f"arn:{partition}:sagemaker:{region}:{account}",
        name=f"endpoint/{settings.endpoint_name.lower()}",
        facets={},
    )


def succeeded(task_instance: Any) -> bool:
    """Whether the task instance succeeded: only then did it write its outputs.

    :param task_instance: what the provider passes (``None`` or no state: taken as a success, the
        method's name says the task completed).
    """
    state = getattr(task_instance, "state", None)
    return state is None or str(getattr(state, "value", state)) == "success"


def operator_lineage(
    inputs: Iterable[str | Dataset], outputs: Iterable[str | Dataset], task_instance: Any
) -> OperatorLineage:
    """``OperatorLineage`` of S3 URIs (converted) and datasets; the outputs only if the task succeeded.

    :param inputs: what the task read.
    :param outputs: what the task wrote when it succeeded.
    :param task_instance: the task instance the provider passes.
    """
    from airflow.providers.openlineage.extractors import OperatorLineage

    def datasets(items: Iterable[str | Dataset]) -> list[Dataset]:
        found: list[Dataset] = []
        for item in items:
            dataset = s3_dataset(item) if isinstance(item, str) else item
            # a repeated dataset (a fixed validation manifest that is also a day's) is listed once
            if all((dataset.namespace, dataset.name) != (seen.namespace, seen.name) for seen in found):
                found.append(dataset)
        return found

    return OperatorLineage(
        inputs=datasets(inputs), outputs=datasets(outputs) if succeeded(task_instance) else []
    )


# One function per operator -------------------------------------------------------------------------
def batch_predict_lineage(
    settings: LoopSettings, day: date, region: str, task_instance: Any
) -> OperatorLineage:
    """``batch_predict``: the day's incoming prefix and the endpoint (whose model predicted, in real
    time or by the day's transform job) in; predictions and quarantine out.

    :param settings: the loop settings.
    :param day: the run's day.
    :param region: the region of the task's AWS connection.
    :param task_instance: the task instance the provider passes.
    """
    return operator_lineage(
        [f"s3://{settings.bucket}/{settings.incoming_prefix(day)}", endpoint_dataset(settings, region)],
        [
            f"s3://{settings.bucket}/{settings.run_key(day, 'predictions.jsonl')}",
            f"s3://{settings.bucket}/{settings.run_key(day, 'quarantine.jsonl')}",
        ],
        task_instance,
    )


def augmented_manifest_lineage(settings: LoopSettings, day: date, task_instance: Any) -> OperatorLineage:
    """``augmented_manifest``: the day's review records and predictions (the image sizes) and, with
    A2I, the flow definitions' output prefix in; the day's augmented manifest out.

    Label Studio's answers come from its API, not from S3: no dataset stands for them.

    :param settings: the loop settings.
    :param day: the run's day.
    :param task_instance: the task instance the provider passes.
    """
    inputs = [
        f"s3://{settings.bucket}/{settings.run_key(day, 'human-loops.jsonl')}",
        f"s3://{settings.bucket}/{settings.run_key(day, 'predictions.jsonl')}",
    ]
    if settings.review_backend == "a2i":
        inputs.append(settings.a2i_output_uri)
    return operator_lineage(
        inputs, [f"s3://{settings.bucket}/{settings.run_key(day, 'augmented.manifest')}"], task_instance
    )


def training_lineage(
    settings: LoopSettings, day: date, job: Mapping[str, Any] | None, task_instance: Any
) -> OperatorLineage:
    """``incremental_training``: the day's augmented manifest and the job's channels (its train and
    validation manifests, the base model's artifact) in; the job's ``model.tar.gz`` out.

    The train manifest is every day's labels so far, copied by the task; the day's own manifest is
    listed too, so that the graph joins this task to the day's ``augmented_manifest``.

    :param settings: the loop settings.
    :param day: the run's day.
    :param job: ``DescribeTrainingJob`` of the job the task attached to; ``None`` when none (skipped).
    :param task_instance: the task instance the provider passes.
    """
    if job is None:
        return operator_lineage([], [], task_instance)
    channels = [
        channel["DataSource"]["S3DataSource"]["S3Uri"]
        for channel in job.get("InputDataConfig", ())
        if "S3DataSource" in channel.get("DataSource", {})
    ]
    artifact = job.get("ModelArtifacts", {}).get("S3ModelArtifacts")
    return operator_lineage(
        [f"s3://{settings.bucket}/{settings.run_key(day, 'augmented.manifest')}", *channels],
        [artifact] if artifact else [],
        task_instance,
    )


def update_endpoint_lineage(
    settings: LoopSettings, training: Mapping[str, Any], region: str, task_instance: Any
) -> OperatorLineage:
    """``update_endpoint``: the trained model's artifact in; the endpoint out.

    :param settings: the loop settings.
    :param training: what ``incremental_training`` returned (``model_data_url``).
    :param region: the region of the task's AWS connection.
    :param task_instance: the task instance the provider passes.
    """
    artifact = training.get("model_data_url")
    return operator_lineage(
        [artifact] if isinstance(artifact, str) else [], [endpoint_dataset(settings, region)], task_instance
    )
