from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from airflow.sdk import Asset, AssetAlias

from active_learning.assets import augmented_manifest_asset, record_asset_events, serving_model_asset


def test_the_manifest_asset_names_the_loops_runs_folder() -> None:
    asset = augmented_manifest_asset("bucket", "loop/")
    assert asset.uri == "s3://bucket/loop/runs"
    assert asset.name == "active_learning.augmented_manifest.bucket/loop/runs"
    assert augmented_manifest_asset("bucket", "").uri == "s3://bucket/runs"  # the bucket root
    assert augmented_manifest_asset(None, "loop").uri == "s3://unset-bucket/loop/runs"


def test_the_model_asset_names_the_endpoint() -> None:
    asset = serving_model_asset("active-learning-od")
    assert asset.uri == "x-sagemaker-endpoint://active-learning-od"
    assert asset.name == "active_learning.serving_model.active-learning-od"
    assert asset != serving_model_asset("another-endpoint")


def test_record_asset_events_puts_extra_on_asset_outlets_only() -> None:
    events: dict[Any, Any] = defaultdict(lambda: SimpleNamespace(extra={}))
    model = serving_model_asset("od")
    record_asset_events({"outlet_events": events}, [model, AssetAlias("other")], {"model_name": "m"})
    assert events[model].extra == {"model_name": "m"}
    assert list(events) == [model]
    assert isinstance(model, Asset)
