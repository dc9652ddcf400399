from __future__ import annotations

from active_learning.training_data import evaluation_gate, hyperparameters, in_validation_hold_out


def test_hyperparameters_are_the_seeds_as_strings() -> None:
    values = hyperparameters(num_classes=20, num_training_samples=1234, overrides={"epochs": 3})
    assert values["use_pretrained_model"] == "0"
    assert values["num_classes"] == "20"
    assert values["num_training_samples"] == "1234"
    assert values["epochs"] == "3"
    assert values["image_shape"] == "300"
    assert all(isinstance(v, str) for v in values.values())
    assert values["mini_batch_size"] == "32"


def test_the_mini_batch_never_exceeds_the_training_set() -> None:
    assert hyperparameters(num_classes=20, num_training_samples=7)["mini_batch_size"] == "7"


def test_hold_out_is_deterministic_and_near_the_fraction() -> None:
    refs = [f"s3://b/img-{i}.jpg" for i in range(4000)]
    held = [ref for ref in refs if in_validation_hold_out(ref, 0.2)]
    assert held == [ref for ref in refs if in_validation_hold_out(ref, 0.2)]
    assert 700 < len(held) < 900


def test_gate() -> None:
    assert evaluation_gate(0.5, 0.5, 0.0).promote
    assert evaluation_gate(0.49, 0.5, 0.02).promote
    assert not evaluation_gate(0.4, 0.5, 0.02).promote
    assert "worse" in evaluation_gate(0.4, 0.5, 0.02).reason
    assert evaluation_gate(0.1, None, 0.0).promote
    assert not evaluation_gate(None, 0.5, 0.0).promote
