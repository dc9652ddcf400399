"""make experiment's harness on a tiny plan: it runs the product's strategies and writes its outputs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def experiment() -> ModuleType:
    spec = importlib.util.spec_from_file_location("experiment", ROOT / "bench" / "experiment.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["experiment"] = module  # dataclasses and the worker processes look it up by name
    spec.loader.exec_module(module)
    return module


def test_labels_to_reach_interpolates_between_days(experiment: ModuleType) -> None:
    labels, maps = [0, 6, 12, 18], [0.1, 0.3, 0.5, 0.6]
    assert experiment.labels_to_reach(0.4, labels, maps) == pytest.approx(9.0)
    assert experiment.labels_to_reach(0.05, labels, maps) == 0
    assert experiment.labels_to_reach(0.7, labels, maps) is None


def test_a_tiny_experiment_prints_the_table_and_writes_json_and_png(
    experiment: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    experiment.main(
        ["--output", str(tmp_path), "--worlds", "4-classes", "--seeds", "2", "--days", "2",
         "--images-per-day", "8", "--budget", "2", "--held-out", "10", "--workers", "1"]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "## 4-classes (seeds [1, 2]" in printed
    for arm in ("random", "least-confidence", "box-uncertainty", "class-balance", "+0.5 random"):
        assert arm in printed
    document = json.loads((tmp_path / "experiment.json").read_text())
    arms = document["worlds"]["4-classes"]["arms"]
    assert len(arms) == 7
    for arm in arms.values():
        assert len(arm["map_mean"]) == len(arm["map_std"]) == 3  # the initial model and 2 days
        assert arm["labels_mean"][0] == 0
        assert arm["labels_mean"][-1] <= 4  # at most the budget each day
    assert arms["random"]["labels_mean"] == [0, 2, 4]
    with Image.open(tmp_path / "experiment.png") as image:
        assert image.format == "PNG"
