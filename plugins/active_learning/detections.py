"""Parsing the built-in object-detection algorithm's inference response, and box geometry.

The response is ``{"prediction": [[class_id, score, xmin, ymin, xmax, ymax], ...]}`` with corners
normalized to 0..1 by the image size and the class id a float (``4.0``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict


class PredictionParseError(ValueError):
    """An inference response is not in the built-in object-detection format."""


class PixelBox(TypedDict):
    """A box as the ``crowd-bounding-box`` element uses it (initial value and worker answers)."""

    label: str
    left: int
    top: int
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Detection:
    """One detected object; corners are normalized to 0..1 by the image size."""

    class_id: int
    score: float
    xmin: float
    ymin: float
    xmax: float
    ymax: float

    @classmethod
    def from_list(cls, row: Sequence[float]) -> Detection:
        """The inverse of :meth:`to_list`."""
        return _parse_row(row, 0)

    def to_list(self) -> list[float]:
        """The detection in the response's own row format (for predictions.jsonl)."""
        return [float(self.class_id), self.score, self.xmin, self.ymin, self.xmax, self.ymax]


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PredictionParseError(f"{what} is not a finite number: {value!r}")
    return float(value)


def _parse_row(row: Any, index: int) -> Detection:
    if not isinstance(row, Sequence) or isinstance(row, str) or len(row) != 6:
        raise PredictionParseError(
            f"prediction[{index}] must be [class_id, score, xmin, ymin, xmax, ymax], got {row!r}"
        )
    class_id, score, xmin, ymin, xmax, ymax = (
        _number(value, f"prediction[{index}][{position}]") for position, value in enumerate(row)
    )
    if class_id < 0 or class_id != int(class_id):
        raise PredictionParseError(f"prediction[{index}]: class id {class_id!r} is not a whole number >= 0")
    if not 0.0 <= score <= 1.0:
        raise PredictionParseError(f"prediction[{index}]: score {score!r} is outside 0..1")
    if xmax < xmin or ymax < ymin:
        raise PredictionParseError(f"prediction[{index}]: corners are inverted: {row!r}")
    return Detection(int(class_id), score, xmin, ymin, xmax, ymax)


def parse_prediction(body: bytes | str | Mapping[str, Any]) -> list[Detection]:
    """Parse one inference response into detections, highest score first.

    :param body: the response body as ``bytes``, ``str`` or an already decoded ``dict``.
    :raises PredictionParseError: saying what is wrong when the body is not in the expected format.
    """
    if isinstance(body, bytes | bytearray):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as err:
            raise PredictionParseError(f"response is not UTF-8 text: {err}") from err
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except json.JSONDecodeError as err:
            raise PredictionParseError(f"response is not JSON: {err}") from err
    if not isinstance(body, Mapping):
        raise PredictionParseError(f"response must be a JSON object, got {type(body).__name__}")
    if "prediction" not in body:
        raise PredictionParseError(f"response has no 'prediction' key (keys: {sorted(body)})")
    rows = body["prediction"]
    if not isinstance(rows, list):
        raise PredictionParseError(f"'prediction' must be a list, got {type(rows).__name__}")
    detections = [_parse_row(row, index) for index, row in enumerate(rows)]
    return sorted(detections, key=lambda detection: detection.score, reverse=True)


def top_score(detections: Iterable[Detection]) -> float | None:
    """The highest score, or ``None`` when there is no detection."""
    return max((detection.score for detection in detections), default=None)


def clip_box(
    left: float, top: float, right: float, bottom: float, width: int, height: int
) -> tuple[int, int, int, int] | None:
    """Round a box's corners to whole pixels inside a ``width`` x ``height`` image.

    Returns ``(left, top, width, height)``, or ``None`` when no area is left.
    """
    x0 = min(max(round(left), 0), width)
    y0 = min(max(round(top), 0), height)
    x1 = min(max(round(right), 0), width)
    y1 = min(max(round(bottom), 0), height)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1 - x0, y1 - y0


def to_pixel_boxes(
    detections: Iterable[Detection],
    image_width: int,
    image_height: int,
    class_names: Sequence[str],
    min_score: float = 0.0,
) -> list[PixelBox]:
    """Turn normalized detections into the worker template's pixel boxes.

    Boxes are clipped to the image; boxes with no area left and detections scoring below
    ``min_score`` are left out.

    :raises ValueError: when the image size is not positive or a class id has no name.
    """
    if image_width <= 0 or image_height <= 0:
        raise ValueError(f"image size must be positive, got {image_width}x{image_height}")
    boxes: list[PixelBox] = []
    for detection in detections:
        if detection.score < min_score:
            continue
        if detection.class_id >= len(class_names):
            raise ValueError(
                f"class id {detection.class_id} has no name in a list of {len(class_names)} classes"
            )
        clipped = clip_box(
            detection.xmin * image_width,
            detection.ymin * image_height,
            detection.xmax * image_width,
            detection.ymax * image_height,
            image_width,
            image_height,
        )
        if clipped is None:
            continue
        left, top, width, height = clipped
        boxes.append(
            PixelBox(label=class_names[detection.class_id], left=left, top=top, width=width, height=height)
        )
    return boxes


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two ``(left, top, width, height)`` boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    intersection = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - intersection
    return intersection / union if union > 0 else 0.0
