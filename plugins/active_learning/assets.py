"""The loop's Airflow Assets: the day's augmented manifest and the model serving on the endpoint.

Outlets of the tasks that announce them (``day_summary`` once the day is done, ``update_endpoint``),
so that other DAGs can be scheduled on them (``schedule=serving_model_asset(...)``: "a new model is
serving") and the UI draws the lineage. Each event's ``extra`` says which one: the day's manifest
URI, its line count and the day's record, or the model's name, ARN, artifact and validation mAP.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from airflow.sdk import Asset

GROUP = "active-learning"


def augmented_manifest_asset(bucket: str | None, prefix: str) -> Asset:
    """Every day's ``runs/<day>/augmented.manifest`` of the loop in ``s3://bucket/prefix/``."""
    location = "/".join(part for part in (bucket or "unset-bucket", prefix.strip("/"), "runs") if part)
    return Asset(
        name=f"active_learning.augmented_manifest.{location}",
        uri=f"s3://{location}/",
        group=GROUP,
    )


def serving_model_asset(endpoint_name: str) -> Asset:
    """The model the SageMaker endpoint serves; an event each time a new one is put on it."""
    return Asset(
        name=f"active_learning.serving_model.{endpoint_name}",
        uri=f"x-sagemaker-endpoint://{endpoint_name}",
        group=GROUP,
    )


def record_asset_events(context: Mapping[str, Any], outlets: Iterable[Any], extra: Mapping[str, Any]) -> None:
    """Put ``extra`` on the events the task's Asset outlets get when it succeeds."""
    for outlet in outlets:
        if isinstance(outlet, Asset):
            context["outlet_events"][outlet].extra.update(extra)
