"""Training data selection, the seed's hyperparameters, and the gate before a model update."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Tags put on SageMaker models: the lineage and quality the next run compares against.
TAG_VALIDATION_MAP = "active-learning:validation-mAP"
TAG_TRAINING_LINES = "active-learning:training-lines"
TAG_TRAINING_JOB = "active-learning:training-job"
TAG_BASE_MODEL = "active-learning:base-model"
# On a training job whose model an endpoint update rolled back: the day's next attempt trains anew.
TAG_REJECTED = "active-learning:rejected"
VALIDATION_METRIC = "validation:mAP"

# The seed's hyperparameters (the first model's), continuing from the previous model's weights.
SEED_HYPERPARAMETERS: dict[str, str] = {
    "base_network": "resnet-50",
    "use_pretrained_model": "0",
    "mini_batch_size": "32",
    "epochs": "1",
    "learning_rate": "0.001",
    "lr_scheduler_step": "3,6",
    "lr_scheduler_factor": "0.1",
    "optimizer": "sgd",
    "momentum": "0.9",
    "weight_decay": "0.0005",
    "overlap_threshold": "0.5",
    "nms_threshold": "0.45",
    "image_shape": "300",
    "label_width": "350",
}


def hyperparameters(
    num_classes: int, num_training_samples: int, overrides: dict[str, str] | None = None
) -> dict[str, str]:
    """The seed's hyperparameters as strings (SageMaker requires strings), for this class list and data."""
    values = {**SEED_HYPERPARAMETERS, **(overrides or {})}
    values["num_classes"] = str(num_classes)
    values["num_training_samples"] = str(num_training_samples)
    # the algorithm rejects a mini batch larger than the training set (early days have few labels)
    values["mini_batch_size"] = str(min(int(values["mini_batch_size"]), max(num_training_samples, 1)))
    return {key: str(value) for key, value in values.items()}


def in_validation_hold_out(source_ref: str, fraction: float) -> bool:
    """A deterministic hold-out: the same image is always on the same side, whatever the day."""
    digest = hashlib.sha256(source_ref.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


@dataclass(frozen=True, slots=True)
class GateDecision:
    """Whether a newly trained model may replace the serving one, and why."""

    promote: bool
    reason: str


def evaluation_gate(new_map: float | None, serving_map: float | None, tolerance: float) -> GateDecision:
    """Promote when the new model's validation mAP is not worse than the serving model's beyond ``tolerance``.

    A new model without the metric is never promoted; a serving model without one (e.g. the
    initial model) accepts any new model that has it.
    """
    if new_map is None:
        return GateDecision(False, f"the new model has no {VALIDATION_METRIC} metric")
    if serving_map is None:
        return GateDecision(True, f"the serving model has no recorded mAP; new mAP {new_map:.4f}")
    if new_map + tolerance >= serving_map:
        return GateDecision(
            True, f"new mAP {new_map:.4f} vs serving {serving_map:.4f} (tolerance {tolerance})"
        )
    return GateDecision(
        False, f"new mAP {new_map:.4f} is worse than serving {serving_map:.4f} beyond tolerance {tolerance}"
    )


def trained_from_serving(
    job_name: str, base_model: str | None, endpoint_name: str, serving_model: str, serving_artifact: str
) -> GateDecision:
    """Compare-and-swap of the endpoint's lineage: a model may replace only the one it was trained from.

    Whatever is cleared, retried or rerun, the endpoint then only moves forward: a job trained from a
    model that no longer serves (another update landed since it started, or an older day was rerun)
    is refused, and its day's labels train with the next training ("all labels so far").
    """
    if base_model == serving_artifact:
        return GateDecision(True, f"{job_name} was trained from the serving model {serving_model}")
    return GateDecision(
        False,
        f"{job_name} was trained from {base_model or 'no model'}, but endpoint {endpoint_name} now serves "
        f"{serving_model} ({serving_artifact}): another update landed since; the labels of this day "
        "train with the next training",
    )


def final_metric(job: Mapping[str, Any], metric: str = VALIDATION_METRIC) -> float | None:
    """A training job's final value of ``metric`` (``DescribeTrainingJob``), ``None`` when it has none."""
    for item in job.get("FinalMetricDataList", []):
        if item["MetricName"] == metric:
            return float(item["Value"])
    return None
