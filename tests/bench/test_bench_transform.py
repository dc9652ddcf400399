"""make bench's Batch Transform pass on a small day: both modes predict the day through the local AWS
in its own process, and the API calls counted are the operator's."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench_transform() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_transform", ROOT / "bench" / "bench_transform.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_transform"] = module  # botocore imports the client plugin by this name
    spec.loader.exec_module(module)
    yield module
    del sys.modules["bench_transform"]


def test_both_modes_predict_the_day_and_only_real_time_invokes_per_image(
    bench_transform: ModuleType, tmp_path: Path
) -> None:
    report = bench_transform.compare_modes(40, 4, 2, 2, 0.0, tmp_path)

    realtime, transform = report["modes"]["realtime"], report["modes"]["batch_transform"]
    assert realtime["predicted"] == transform["predicted"] == 40
    assert realtime["to_review"] == transform["to_review"]
    assert realtime["api_calls"]["InvokeEndpoint"] == realtime["api_calls"]["GetObject"] == 40
    assert "InvokeEndpoint" not in transform["api_calls"]
    assert transform["api_calls"]["CreateTransformJob"] == 1
    # a .out per image, and the images routed to review for their size
    assert transform["api_calls"]["GetObject"] == 40 + transform["to_review"]
    assert bench_transform.PLUGIN_ENV not in os.environ  # the counting stops with the pass
    assert not (tmp_path / "local-aws.json").exists()  # the local AWS stopped
