"""make experiment's harness on a tiny plan: it runs the product's strategies and writes its outputs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
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


def test_a_paired_difference_is_ahead_or_behind_only_beyond_its_spread(experiment: ModuleType) -> None:
    differences = np.array([[0.0, 0.10, 0.01, -0.2], [0.0, 0.12, -0.03, -0.3]])
    result = experiment.paired(differences)
    assert result["mean"] == pytest.approx([0.0, 0.11, -0.01, -0.25])
    assert result["verdict"] == ["within", "ahead", "within", "behind"]


def test_each_arm_is_paired_with_random_given_the_labels_it_used(experiment: ModuleType) -> None:
    """Threshold 0 routes (almost) nothing: the seed's routing leaves the budget unspent and its
    random twin gets as few labels; budget fill spends it all, as random at the same days does."""
    plan = experiment.Plan(days=2, images_per_day=8, budget=2, held_out=10, threshold=0.0, initial_scenes=4)
    world = experiment.make_worlds(1.2, None)["4-classes"]
    run = experiment.replay(("4-classes", world, 1, plan))
    curves = run["curves"]
    assert curves["random"]["labels"] == [0, 2, 4]
    filled = curves["box-uncertainty"]
    assert filled["labels"] == [0, 2, 4]
    assert filled["filled"] == [2 - routed for routed in filled["routed"]]
    assert filled["matched_random_map"] == curves["random"]["map"]
    seed_routing = curves["box-uncertainty, threshold only"]
    assert seed_routing["filled"] == [0, 0]
    assert seed_routing["labels"][-1] == sum(min(routed, 2) for routed in seed_routing["routed"])
    if seed_routing["labels"][-1] == 0:  # nothing labelled: its random twin labels nothing either
        assert seed_routing["matched_random_map"] == [curves["random"]["map"][0]] * 3


def test_the_calibrated_threshold_is_where_the_validation_detections_are_right_often_enough(
    experiment: ModuleType,
) -> None:
    world = experiment.make_worlds(1.2, None)["4-classes"]
    validation = experiment.make_scenes(7, 20, world)
    sizes = [experiment.image_size(image) for image, _ in validation]
    weak = experiment.train(None, experiment.make_scenes(1, 2, world), list(world.classes))
    strong = experiment.train(None, experiment.make_scenes(2, 60, world), list(world.classes))
    for model in (weak, strong):
        threshold = experiment.calibrated_threshold(model, validation, sizes)
        assert 0.0 <= threshold <= 1.0
    # a model that knows the world is right more often at lower scores: a lower threshold
    assert experiment.calibrated_threshold(strong, validation, sizes) <= experiment.calibrated_threshold(
        weak, validation, sizes
    )


def test_a_tiny_experiment_prints_the_table_and_writes_json_and_png(
    experiment: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    experiment.main(
        ["--output", str(tmp_path), "--worlds", "4-classes", "--seeds", "2", "--days", "2",
         "--images-per-day", "8", "--budget", "2", "--held-out", "10", "--workers", "1"]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "## 4-classes (seeds [1, 2]" in printed
    for arm in (
        "random",
        "least-confidence",
        "box-uncertainty",
        "class-balance",
        "threshold only",
        "calibrated",
    ):
        assert arm in printed
    document = json.loads((tmp_path / "experiment.json").read_text())
    assert document["options"]["tail_exponent"] == 1.2
    arms = document["worlds"]["4-classes"]["arms"]
    assert len(arms) == 6
    for label, arm in arms.items():
        assert len(arm["map_mean"]) == len(arm["map_std"]) == 3  # the initial model and 2 days
        assert arm["labels_mean"][0] == 0
        assert arm["labels_mean"][-1] <= 4  # at most the budget each day
        if label != "random":
            for baseline in ("vs_random_same_labels", "vs_random_same_days"):
                assert len(arm[baseline]["mean"]) == len(arm[baseline]["verdict"]) == 3
    assert arms["random"]["labels_mean"] == [0, 2, 4]
    with Image.open(tmp_path / "experiment.png") as image:
        assert image.format == "PNG"
