"""Reviewers' answers (A2I, Label Studio) -> Ground Truth style augmented-manifest lines; JSON Lines I/O.

The line format is the seed's ``convert_a2i_to_augmented_manifest``: ``source-ref``, the label
attribute with ``annotations`` and ``image_size``, and ``<attribute>-metadata`` with the class map.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from active_learning.classes import class_map
from active_learning.detections import clip_box, iou
from active_learning.reviews import ReviewAnswer, ReviewedImage

DEFAULT_ATTRIBUTE_NAME = "a2i-retraining"
CONSENSUS_IOU = 0.5
# A worker's answer with more boxes is refused (far above the seed's VOC images, at most 42 objects).
DEFAULT_MAX_BOXES = 100
SHOWN_CHARACTERS = 64  # of a reviewer's value quoted in a report or a log line
LONGEST_S3_URI = 1100  # s3:// + a 63-character bucket + / + a 1,024-byte key


def shown(value: Any, limit: int = SHOWN_CHARACTERS) -> str:
    """A reviewer's value as a report quotes it: its repr, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


class ManifestConversionError(ValueError):
    """A review's answers (an A2I output, a Label Studio task) cannot be turned into a manifest line."""


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
class DroppedBox:
    """A reviewer's box left out of the manifest line, and why (for the conversion report).

    :param answer: the index of the worker's answer in ``humanAnswers`` (or of the annotation).
    :param box: the box's entry in that answer's list (``boundingBoxes``, or Label Studio's ``result``).
    :param label: the box's label as the worker gave it (a long one cut, as :func:`shown` cuts it).
    :param reason: why it was left out (outside the image, no size, unknown label, not a box).
    :param field: the entry's name in the answer (``boundingBoxes[3]``, ``result[3]``).
    """

    answer: int
    box: int
    label: Any
    reason: str
    field: str = ""

    def to_dict(self) -> dict[str, Any]:
        label = (
            self.label
            if not isinstance(self.label, str) or len(self.label) <= SHOWN_CHARACTERS
            else shown(self.label)
        )
        return {
            "answer": self.answer,
            "box": self.box,
            "field": self.field,
            "label": label,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Conversion:
    """What one A2I output gives: the manifest line (``None`` when no box is left) and the dropped boxes."""

    source_ref: str
    line: dict[str, Any] | None
    dropped_boxes: tuple[DroppedBox, ...]


@dataclass(frozen=True, slots=True)
class _Answer:
    boxes: list[_Box]
    image_width: int
    image_height: int
    submission_time: str


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _number(value: Any, where: str, field: str) -> float:
    """A finite JSON number (``Infinity``/``NaN`` parse as floats in Python's json: refused here)."""
    try:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError
        return float(value)
    except (ValueError, OverflowError):  # OverflowError: an integer too large for a float
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
        raise ManifestConversionError(f"{where}: {field} is not a finite number: {shown}") from None


def _answer(
    answer: ReviewAnswer,
    where: str,
    index: int,
    class_ids: Mapping[str, int],
    dropped: list[DroppedBox],
    max_boxes: int,
) -> _Answer:
    """One worker's answer; boxes with an unknown label or no area in the image go to ``dropped``."""
    try:
        _parse_time(answer.submission_time)
    except (TypeError, ValueError) as err:
        raise ManifestConversionError(f"{where}: not a bounding-box answer ({err!r})") from err
    if len(answer.boxes) > max_boxes:
        raise ManifestConversionError(
            f"{where}: {answer.boxes_field} holds {len(answer.boxes)} boxes, more than "
            f"max_boxes_per_image={max_boxes}; none of them is used"
        )
    sizes = [_number(answer.image_width, where, f"{answer.size_field}.width")]
    sizes.append(_number(answer.image_height, where, f"{answer.size_field}.height"))
    if any(value != int(value) for value in sizes):
        raise ManifestConversionError(
            f"{where}: image size {answer.image_width}x{answer.image_height} is not in whole pixels"
        )
    width, height = (int(value) for value in sizes)
    if width <= 0 or height <= 0:
        raise ManifestConversionError(f"{where}: image size {width}x{height} is not positive")

    def drop(number: int, label: Any, reason: str) -> None:
        dropped.append(DroppedBox(index, number, label, reason, f"{answer.boxes_field}[{number}]"))

    for number, label, reason in answer.problems:
        drop(number, label, reason)
    boxes: list[_Box] = []
    for position, raw_box in enumerate(answer.boxes):
        number = answer.box_number(position)
        field = f"{answer.boxes_field}[{number}]"
        if not isinstance(raw_box, Mapping) or not {"left", "top", "width", "height"} <= raw_box.keys():
            raise ManifestConversionError(f"{where}: malformed box {field}: {shown(raw_box)}")
        left, top, box_width, box_height = (
            _number(raw_box[name], where, f"{field}.{name}") for name in ("left", "top", "width", "height")
        )
        label = raw_box.get("label")
        if not isinstance(label, str) or label not in class_ids:
            drop(number, label, f"label {shown(label)} is not in the class list")
            continue
        if box_width <= 0 or box_height <= 0:
            drop(number, label, f"size {box_width:g}x{box_height:g} is not positive")
            continue
        clipped = clip_box(left, top, left + box_width, top + box_height, width, height)
        if clipped is None:
            drop(number, label, f"no area inside the {width}x{height} image")
            continue
        boxes.append(_Box(class_ids[label], *clipped))
    return _Answer(boxes, width, height, answer.submission_time)


def _consolidate(answers: Sequence[_Answer]) -> list[tuple[_Box, int]]:
    """Keep boxes that more than half of the workers agree on, with the number who agreed.

    A box agrees with another when it has the same class and IoU >= 0.5. Each worker's box is
    used in at most one consolidated box; the consolidated box is the mean of the agreeing boxes.
    Boxes are compared within their class only (near-linear in boxes for a spread of classes).
    """
    by_class: list[dict[int, list[int]]] = []
    for answer in answers:
        buckets: dict[int, list[int]] = {}
        for index, box in enumerate(answer.boxes):
            buckets.setdefault(box.class_id, []).append(index)
        by_class.append(buckets)
    used: set[tuple[int, int]] = set()
    kept: list[tuple[_Box, int]] = []
    for worker, answer in enumerate(answers):
        for index, box in enumerate(answer.boxes):
            if (worker, index) in used:
                continue
            group = [(worker, index)]
            for other in range(worker + 1, len(answers)):
                candidates = [
                    (iou(box.ltwh, answers[other].boxes[other_index].ltwh), other_index)
                    for other_index in by_class[other].get(box.class_id, ())
                    if (other, other_index) not in used
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
            # the mean of boxes with area inside the image has area inside it: never None in practice
            clipped = clip_box(left, top, right, bottom, answers[0].image_width, answers[0].image_height)
            if clipped is not None:
                kept.append((_Box(box.class_id, *clipped), len(group)))
    return kept


def a2i_review(output: Mapping[str, Any]) -> ReviewedImage:
    """The A2I adapter: one output document (``output.json``) as a backend-neutral reviewed image.

    :raises ManifestConversionError: naming the human loop and what is wrong with the document.
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
    if not isinstance(raw_answers, list):
        raise ManifestConversionError(f"human loop {loop!r}: humanAnswers is not a list")
    answers = []
    for index, raw in enumerate(raw_answers):
        try:
            result = raw["answerContent"]["annotatedResult"]
            size = result["inputImageProperties"]
            raw_boxes = result.get("boundingBoxes") or []
            answer = ReviewAnswer(
                image_width=size["width"],
                image_height=size["height"],
                boxes=tuple(raw_boxes) if isinstance(raw_boxes, list) else raw_boxes,
                submission_time=str(raw["submissionTime"]),
                boxes_field="boundingBoxes",
                size_field="inputImageProperties",
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ManifestConversionError(
                f"human loop {loop!r}, answer {index}: not a bounding-box answer ({shown(err)})"
            ) from err
        if not isinstance(raw_boxes, list):
            raise ManifestConversionError(
                f"human loop {loop!r}, answer {index}: boundingBoxes is not a list: {raw_boxes!r}"
            )
        answers.append(answer)
    return ReviewedImage("human loop", loop, source_ref, tuple(answers), f"a2i/{loop}")


def label_studio_review(task: Mapping[str, Any]) -> ReviewedImage:
    """The Label Studio adapter: one task with its annotations as a backend-neutral reviewed image.

    Each submitted annotation is one worker's answer (skipped ones are not answers); each
    ``rectanglelabels`` result with one label is one box in percent of ``original_width``/
    ``original_height``, turned into pixels. Other results (a polygon, a box with no label or with
    several, a rotated box: the manifest has axis-aligned boxes) are reported as dropped.
    The task's ``data`` carries ``name``, ``source``, ``width`` and ``height`` (set at import).

    :raises ManifestConversionError: naming the task, the answer and the field that is wrong.
    """
    data = task.get("data") if isinstance(task, Mapping) else None
    if not isinstance(data, Mapping) or not isinstance(data.get("name"), str):
        raise ManifestConversionError(
            f"Label Studio task {shown(task.get('id'))} has no review name in its data"
        )
    name = data["name"]
    source_ref = data.get("source")
    if not isinstance(source_ref, str) or not source_ref.startswith("s3://"):
        raise ManifestConversionError(f"Label Studio task {name!r}: data.source is not an S3 URI")
    annotations = task.get("annotations") or []
    if not isinstance(annotations, list):
        raise ManifestConversionError(f"Label Studio task {name!r}: annotations is not a list")
    submitted = [a for a in annotations if not (isinstance(a, Mapping) and a.get("was_cancelled"))]
    answers = []
    for index, annotation in enumerate(submitted):
        where = f"Label Studio task {name!r}, answer {index}"
        results = annotation.get("result") if isinstance(annotation, Mapping) else annotation
        if results is None:
            results = []
        if not isinstance(results, list):
            raise ManifestConversionError(f"{where}: result is not a list: {shown(results)}")
        answers.append(_label_studio_answer(results, annotation, data, where))
    return ReviewedImage("Label Studio task", name, source_ref, tuple(answers), f"label-studio/{name}")


def _label_studio_answer(
    results: list[Any], annotation: Mapping[str, Any], data: Mapping[str, Any], where: str
) -> ReviewAnswer:
    """One annotation's ``result`` list as pixel boxes on the image size its results give."""
    rectangles = [r for r in results if isinstance(r, Mapping) and r.get("type") == "rectanglelabels"]
    width = rectangles[0].get("original_width") if rectangles else data.get("width")
    height = rectangles[0].get("original_height") if rectangles else data.get("height")
    boxes: list[dict[str, Any]] = []
    numbers: list[int] = []
    problems: list[tuple[int, Any, str]] = []
    for number, result in enumerate(results):
        field = f"result[{number}]"
        if not isinstance(result, Mapping):
            raise ManifestConversionError(f"{where}: {field} is not an object: {shown(result)}")
        value = result.get("value")
        if not isinstance(value, Mapping):
            raise ManifestConversionError(f"{where}: {field}.value is not an object: {shown(value)}")
        kind = result.get("type")
        labels = value.get(kind) if isinstance(kind, str) else None
        labels = labels if isinstance(labels, list) else []
        label = labels[0] if labels else None
        if kind != "rectanglelabels":
            problems.append((number, label, f"a {shown(kind)} result, not a labelled box"))
            continue
        if len(labels) != 1:
            problems.append((number, label, f"{len(labels)} labels on one box: {shown(labels)}"))
            continue
        if (result.get("original_width"), result.get("original_height")) != (width, height):
            raise ManifestConversionError(
                f"{where}: {field} is on a {shown(result.get('original_width'))}x"
                f"{shown(result.get('original_height'))} image, not {shown(width)}x{shown(height)}"
            )
        if _number(value.get("rotation", 0), where, f"{field}.value.rotation"):
            problems.append((number, label, f"rotated by {value['rotation']:g} degrees"))
            continue
        image_width = _number(width, where, f"{field}.original_width")
        image_height = _number(height, where, f"{field}.original_height")
        x, y, box_width, box_height = (
            _number(value.get(key), where, f"{field}.value.{key}") for key in ("x", "y", "width", "height")
        )
        boxes.append(
            {
                "label": label,
                "left": x * image_width / 100,
                "top": y * image_height / 100,
                "width": box_width * image_width / 100,
                "height": box_height * image_height / 100,
            }
        )
        numbers.append(number)
    return ReviewAnswer(
        image_width=width,
        image_height=height,
        boxes=tuple(boxes),
        submission_time=str(annotation.get("updated_at") or annotation.get("created_at")),
        boxes_field="result",
        box_numbers=tuple(numbers),
        size_field="original",
        problems=tuple(problems),
    )


def convert_review(
    review: ReviewedImage,
    class_names: Sequence[str],
    attribute_name: str = DEFAULT_ATTRIBUTE_NAME,
    image_size: Callable[[str], tuple[int, int] | None] | None = None,
    recorded: tuple[str, str] | None = None,
    max_boxes: int = DEFAULT_MAX_BOXES,
) -> Conversion:
    """Turn one reviewed image, from any backend, into one augmented-manifest line.

    Each worker's boxes are clipped to the image; a box with an unknown label, no size or no area in
    the image is left out and reported in :attr:`Conversion.dropped_boxes` (the worker's other boxes
    and the other workers' answers still count). Several workers are consolidated by majority.

    :param review: the image and its workers' answers (see :func:`a2i_review`, :func:`label_studio_review`).
    :param class_names: class names in id order (the labels the workers chose from).
    :param attribute_name: the label attribute name; the metadata goes under ``<name>-metadata``.
    :param image_size: gives the ``(width, height)`` an image (``source-ref``) had when it was
        predicted, or ``None`` when it was not; every worker must have seen that size. Without it,
        the workers must agree with the first answer's size.
    :param recorded: the review's name and image as the run recorded them when it started it
        (``human-loops.jsonl``): the answers must be for that image, whatever they claim.
    :param max_boxes: the most boxes a worker's answer may hold (more: the review is an error).
    :returns: the line (``None`` when no box is left to train on: a line with empty annotations breaks
        the built-in algorithm's training) and the dropped boxes.
    :raises ManifestConversionError: naming the review and what is wrong (a malformed or
        non-finite value names its field; a size that differs names both sizes; answers for
        another review or image than the run recorded name both).
    """
    kind, name, source_ref = review.kind, review.name, review.source_ref
    if recorded is not None and (name, source_ref) != recorded:
        raise ManifestConversionError(
            f"{kind} {shown(name)} answers for {shown(source_ref, LONGEST_S3_URI)}, but the run "
            f"recorded {recorded[0]!r} for {recorded[1]}: its answers are not used"
        )
    expected = None
    if image_size is not None:
        expected = image_size(source_ref)
        if expected is None:
            raise ManifestConversionError(
                f"{kind} {name!r}: {source_ref} is not among the day's predicted images, "
                "so the size its reviewers saw cannot be checked"
            )
    class_ids = {class_name: class_id for class_id, class_name in enumerate(class_names)}
    dropped: list[DroppedBox] = []
    answers = [
        _answer(raw, f"{kind} {name!r}, answer {index}", index, class_ids, dropped, max_boxes)
        for index, raw in enumerate(review.answers)
    ]
    if answers:
        expected = expected or (answers[0].image_width, answers[0].image_height)
        for index, answer in enumerate(answers):
            if (answer.image_width, answer.image_height) != expected:
                raise ManifestConversionError(
                    f"{kind} {name!r}, answer {index}: the reviewer saw a "
                    f"{answer.image_width}x{answer.image_height} image, but {source_ref} is "
                    f"{expected[0]}x{expected[1]}; the {kind.rsplit(' ', 1)[-1]}'s boxes are not used"
                )
    consolidated = _consolidate(answers) if answers else []
    if not consolidated:
        return Conversion(source_ref, None, tuple(dropped))
    workers = len(answers)
    latest = max(answers, key=lambda answer: _parse_time(answer.submission_time))
    line = {
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
            "job-name": review.job_name,
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
    return Conversion(source_ref, line, tuple(dropped))


def convert_a2i_output(
    output: Mapping[str, Any],
    class_names: Sequence[str],
    attribute_name: str = DEFAULT_ATTRIBUTE_NAME,
    image_size: Callable[[str], tuple[int, int] | None] | None = None,
    recorded: tuple[str, str] | None = None,
    max_boxes: int = DEFAULT_MAX_BOXES,
) -> Conversion:
    """Turn one A2I output document (``output.json``) into one augmented-manifest line:
    :func:`convert_review` of :func:`a2i_review`.

    :raises ManifestConversionError: naming the human loop and what is wrong.
    """
    return convert_review(a2i_review(output), class_names, attribute_name, image_size, recorded, max_boxes)


def a2i_output_to_manifest_line(
    output: Mapping[str, Any],
    class_names: Sequence[str],
    attribute_name: str = DEFAULT_ATTRIBUTE_NAME,
) -> dict[str, Any] | None:
    """The manifest line of :func:`convert_a2i_output` alone (``None`` when no box is left to train on).

    :raises ManifestConversionError: naming the human loop and what is wrong.
    """
    return convert_a2i_output(output, class_names, attribute_name).line


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
