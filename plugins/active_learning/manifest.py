"""A2I output -> Ground Truth style augmented-manifest lines, and a streaming JSON Lines reader/writer.

The line format is the seed's ``convert_a2i_to_augmented_manifest``: ``source-ref``, the label
attribute with ``annotations`` and ``image_size``, and ``<attribute>-metadata`` with the class map.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from active_learning.classes import class_map
from active_learning.detections import clip_box, iou

DEFAULT_ATTRIBUTE_NAME = "a2i-retraining"
CONSENSUS_IOU = 0.5


class ManifestConversionError(ValueError):
    """An A2I output document cannot be turned into a manifest line."""


class ManifestFormatError(ValueError):
    """A manifest file has a line that is not a JSON object."""


@dataclass(frozen=True, slots=True)
class _Box:
    class_id: int
    left: float
    top: float
    width: float
    height: float

    @property
    def ltwh(self) -> tuple[float, float, float, float]:
        return (self.left, self.top, self.width, self.height)


@dataclass(frozen=True, slots=True)
class _Answer:
    boxes: list[_Box]
    image_width: int
    image_height: int
    submission_time: str


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _answer(raw: Mapping[str, Any], loop: str, index: int, class_ids: Mapping[str, int]) -> _Answer:
    where = f"human loop {loop!r}, answer {index}"
    try:
        result = raw["answerContent"]["annotatedResult"]
        size = result["inputImageProperties"]
        width, height = int(size["width"]), int(size["height"])
        raw_boxes = result.get("boundingBoxes") or []
        submission_time = str(raw["submissionTime"])
        _parse_time(submission_time)
    except (KeyError, TypeError, ValueError) as err:
        raise ManifestConversionError(f"{where}: not a bounding-box answer ({err!r})") from err
    if width <= 0 or height <= 0:
        raise ManifestConversionError(f"{where}: image size {width}x{height} is not positive")
    boxes: list[_Box] = []
    for raw_box in raw_boxes:
        label = raw_box.get("label")
        if label not in class_ids:
            raise ManifestConversionError(f"{where}: label {label!r} is not in the class list")
        try:
            clipped = clip_box(
                float(raw_box["left"]),
                float(raw_box["top"]),
                float(raw_box["left"]) + float(raw_box["width"]),
                float(raw_box["top"]) + float(raw_box["height"]),
                width,
                height,
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ManifestConversionError(f"{where}: malformed box {raw_box!r}") from err
        if clipped is not None:
            boxes.append(_Box(class_ids[label], *clipped))
    return _Answer(boxes, width, height, submission_time)


def _consolidate(answers: Sequence[_Answer]) -> list[tuple[_Box, int]]:
    """Keep boxes that more than half of the workers agree on, with the number who agreed.

    A box agrees with another when it has the same class and IoU >= 0.5. Each worker's box is
    used in at most one consolidated box; the consolidated box is the mean of the agreeing boxes.
    """
    used: set[tuple[int, int]] = set()
    kept: list[tuple[_Box, int]] = []
    for worker, answer in enumerate(answers):
        for index, box in enumerate(answer.boxes):
            if (worker, index) in used:
                continue
            group = [(worker, index)]
            for other in range(worker + 1, len(answers)):
                candidates = [
                    (iou(box.ltwh, candidate.ltwh), other_index)
                    for other_index, candidate in enumerate(answers[other].boxes)
                    if (other, other_index) not in used and candidate.class_id == box.class_id
                ]
                best = max(candidates, default=None)
                if best is not None and best[0] >= CONSENSUS_IOU:
                    group.append((other, best[1]))
            if 2 * len(group) <= len(answers):
                continue
            used.update(group)
            members = [answers[w].boxes[i] for w, i in group]
            left = sum(m.left for m in members) / len(members)
            top = sum(m.top for m in members) / len(members)
            right = sum(m.left + m.width for m in members) / len(members)
            bottom = sum(m.top + m.height for m in members) / len(members)
            clipped = clip_box(left, top, right, bottom, answers[0].image_width, answers[0].image_height)
            if clipped is not None:
                kept.append((_Box(box.class_id, *clipped), len(group)))
    return kept


def a2i_output_to_manifest_line(
    output: Mapping[str, Any],
    class_names: Sequence[str],
    attribute_name: str = DEFAULT_ATTRIBUTE_NAME,
) -> dict[str, Any] | None:
    """Turn one A2I output document (``output.json``) into one augmented-manifest line.

    :param output: the parsed A2I output: ``humanLoopName``, ``inputContent.taskObject``, ``humanAnswers``.
    :param class_names: class names in id order (the labels the workers chose from).
    :param attribute_name: the label attribute name; the metadata goes under ``<name>-metadata``.
    :returns: the line as a dict, or ``None`` when no box is left to train on (a line with empty
        annotations breaks the built-in algorithm's training).
    :raises ManifestConversionError: naming the human loop and what is wrong (e.g. an unknown label).
    """
    if not isinstance(output, Mapping):
        raise ManifestConversionError(f"A2I output must be a JSON object, got {type(output).__name__}")
    loop = output.get("humanLoopName")
    if not isinstance(loop, str) or not loop:
        raise ManifestConversionError("A2I output has no humanLoopName")
    input_content = output.get("inputContent")
    if isinstance(input_content, str):
        try:
            input_content = json.loads(input_content)
        except json.JSONDecodeError as err:
            raise ManifestConversionError(f"human loop {loop!r}: inputContent is not JSON") from err
    source_ref = input_content.get("taskObject") if isinstance(input_content, Mapping) else None
    if not isinstance(source_ref, str) or not source_ref.startswith("s3://"):
        raise ManifestConversionError(f"human loop {loop!r}: inputContent.taskObject is not an S3 URI")
    raw_answers = output.get("humanAnswers") or []
    class_ids = {name: class_id for class_id, name in enumerate(class_names)}
    answers = [_answer(raw, loop, index, class_ids) for index, raw in enumerate(raw_answers)]
    if not answers:
        return None
    consolidated = _consolidate(answers)
    if not consolidated:
        return None
    workers = len(answers)
    latest = max(answers, key=lambda answer: _parse_time(answer.submission_time))
    return {
        "source-ref": source_ref,
        attribute_name: {
            "annotations": [
                {
                    "class_id": box.class_id,
                    "left": int(box.left),
                    "top": int(box.top),
                    "width": int(box.width),
                    "height": int(box.height),
                }
                for box, _ in consolidated
            ],
            "image_size": [{"width": answers[0].image_width, "height": answers[0].image_height, "depth": 3}],
        },
        f"{attribute_name}-metadata": {
            "job-name": f"a2i/{loop}",
            "class-map": class_map(class_names),
            "human-annotated": "yes",
            "objects": [
                {"confidence": 1 if agreed == workers else round(agreed / workers, 4)}
                for _, agreed in consolidated
            ],
            "creation-date": latest.submission_time,
            "type": "groundtruth/object-detection",
        },
    }


def write_manifest(lines: Iterable[Mapping[str, Any]], stream: IO[str]) -> int:
    """Write lines as JSON Lines to a text stream, one at a time; returns the number written."""
    count = 0
    for line in lines:
        stream.write(json.dumps(line, separators=(", ", ": ")))
        stream.write("\n")
        count += 1
    return count


def read_manifest(stream: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Read JSON Lines one at a time from a text stream or any iterable of lines; blank lines are skipped.

    :raises ManifestFormatError: naming the line number of a line that is not a JSON object.
    """
    for number, text in enumerate(stream, start=1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
        except json.JSONDecodeError as err:
            raise ManifestFormatError(f"line {number}: not valid JSON: {err}") from err
        if not isinstance(line, dict):
            raise ManifestFormatError(f"line {number}: expected a JSON object, got {type(line).__name__}")
        yield line
