"""Selection strategies: which of a day's routed images a review budget (``max_reviews``) keeps.

Each strategy turns one image's detections (and the labels per class so far) into a *rank*: lower
ranks are kept first. A rank is computed once per image, as the image is predicted, so a day is
selected with memory bounded by the budget (see :class:`active_learning.routing.ReviewBudget`),
never by the day's image count. A *random share* of the budget can go to images drawn at random
instead: the draw is a hash of the day and the image, so a day always draws the same images,
whatever the order they arrive in.

- ``least-confidence``: the seed's rule, lowest top score first (an image with no detection first).
- ``box-uncertainty``: the sum over the image's objects of ``1 - margin``, the margin being the
  object's best class score minus its runner-up's (the endpoint returns both as overlapping boxes);
  an image with many unsure objects first.
- ``class-balance``: images whose predicted classes have the fewest labels so far first (the rarest
  of its objects' classes decides), then by ``box-uncertainty``.

Measured against random picks in ``make experiment`` (README, "Selection strategies").
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from active_learning.detections import Detection, top_score

LEAST_CONFIDENCE = "least-confidence"
BOX_UNCERTAINTY = "box-uncertainty"
CLASS_BALANCE = "class-balance"
STRATEGIES: tuple[str, ...] = (LEAST_CONFIDENCE, BOX_UNCERTAINTY, CLASS_BALANCE)
# Detections overlapping at least this much are candidates for the same object (best and runner-up class).
SAME_OBJECT_IOU = 0.5

Rank = tuple[float, ...]


def uniform_draw(*parts: str) -> float:
    """A number in [0, 1) that depends only on ``parts``: the same image draws the same on a rerun."""
    digest = hashlib.sha256("\0".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _iou(first: Detection, second: Detection) -> float:
    width = min(first.xmax, second.xmax) - max(first.xmin, second.xmin)
    height = min(first.ymax, second.ymax) - max(first.ymin, second.ymin)
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (
        (first.xmax - first.xmin) * (first.ymax - first.ymin)
        + (second.xmax - second.xmin) * (second.ymax - second.ymin)
        - inter
    )
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True, slots=True)
class DetectedObject:
    """One object: its best class and score, and the runner-up class's score (0 when there is none)."""

    class_id: int
    score: float
    runner_up: float

    @property
    def uncertainty(self) -> float:
        """``1 - margin``: 0 when one class has all the score, 1 when two classes tie."""
        return 1.0 - (self.score - self.runner_up)


def objects(detections: Iterable[Detection]) -> list[DetectedObject]:
    """Group an image's detections into objects, best score first: a detection overlapping an
    object's best box (IoU >= :data:`SAME_OBJECT_IOU`) with another class is its runner-up."""
    ranked = sorted(detections, key=lambda d: (-d.score, d.class_id, d.xmin, d.ymin, d.xmax, d.ymax))
    best: list[Detection] = []
    runner_up: list[float] = []
    for detection in ranked:
        for index, anchor in enumerate(best):
            if _iou(anchor, detection) >= SAME_OBJECT_IOU:
                if detection.class_id != anchor.class_id:
                    runner_up[index] = max(runner_up[index], detection.score)
                break
        else:
            best.append(detection)
            runner_up.append(0.0)
    return [DetectedObject(d.class_id, d.score, r) for d, r in zip(best, runner_up, strict=True)]


def label_counts(lines: Iterable[Mapping], label_attribute: str) -> Counter[int]:
    """Labelled boxes per class id in augmented-manifest lines (what ``class-balance`` balances)."""
    counts: Counter[int] = Counter()
    for line in lines:
        label = line.get(label_attribute)
        for annotation in label.get("annotations", []) if isinstance(label, Mapping) else []:
            class_id = annotation.get("class_id") if isinstance(annotation, Mapping) else None
            if isinstance(class_id, int | float) and not isinstance(class_id, bool):
                counts[int(class_id)] += 1
    return counts


@dataclass(frozen=True, slots=True)
class SelectionStrategy:
    """How a capped day chooses its reviews.

    :param name: one of :data:`STRATEGIES`.
    :param random_share: share (0..1) of the budget given to images drawn at random among the
        routed ones, reproducibly for a day (1: random selection).
    """

    name: str = LEAST_CONFIDENCE
    random_share: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in STRATEGIES:
            raise ValueError(f"selection strategy must be one of {', '.join(STRATEGIES)}, got {self.name!r}")
        if not 0.0 <= self.random_share <= 1.0:
            raise ValueError(f"random_share must be within 0..1, got {self.random_share!r}")

    def rank(self, detections: Sequence[Detection], counts: Mapping[int, int] | None = None) -> Rank:
        """The image's rank under the strategy: the lower, the sooner it is kept.

        :param counts: labelled boxes per class id so far (only ``class-balance`` reads it).
        """
        if self.name == LEAST_CONFIDENCE:
            score = top_score(detections)
            return (-1.0 if score is None else score,)
        found = objects(detections)
        uncertainty = sum(item.uncertainty for item in found)
        if self.name == BOX_UNCERTAINTY:
            return (-math.inf if not found else -uncertainty,)
        counts = counts or {}
        rarest = min((counts.get(item.class_id, 0) for item in found), default=-1)
        return (float(rarest), -uncertainty)

    def random_picks(self, limit: int) -> int:
        """How many of ``limit`` reviews are drawn at random (rounded half up)."""
        return min(limit, math.floor(limit * self.random_share + 0.5))
