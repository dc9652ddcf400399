"""VOC-style mean average precision: the validation metric the emulator's training jobs report."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError


def image_size(image_bytes: bytes) -> tuple[int, int]:
    """``(width, height)`` of an encoded image, for ``mean_average_precision``'s ``sizes``.

    Reads only the header. :raises ValueError: when the bytes are not an image.
    """
    try:
        with Image.open(io.BytesIO(image_bytes)) as image:
            return image.size
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"not a readable image: {err}") from err


def box_iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Intersection over union of one (x0, y0, x1, y1) box against rows of boxes."""
    width = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0.0, None)
    height = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0.0, None)
    inter = width * height
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = (box[2] - box[0]) * (box[3] - box[1]) + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision envelope (VOC 2010+ all-point interpolation)."""
    recall = np.concatenate(([0.0], recall, [1.0]))
    precision = np.concatenate(([0.0], precision, [0.0]))
    # The envelope: at each recall, the best precision reachable at that recall or beyond.
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(((recall[steps + 1] - recall[steps]) * precision[steps + 1]).sum())


def mean_average_precision(
    predictions: Sequence[dict],
    references: Sequence[list[dict]],
    num_classes: int,
    *,
    sizes: Sequence[tuple[int, int]],
    iou_threshold: float = 0.5,
) -> float:
    """VOC-style mAP over images, at ``iou_threshold`` (0.5: mAP@0.5).

    :param predictions: per image, a response of the built-in algorithm:
        ``{"prediction": [[class_id, score, xmin, ymin, xmax, ymax], ...]}``, corners normalized 0..1.
        Rows with a class id outside ``0..num_classes - 1`` (SSD's -1 background) are ignored.
    :param references: per image, the reference boxes: dicts with ``class_id``, ``left``, ``top``,
        ``width``, ``height`` in pixels (as in an augmented manifest's ``annotations``).
    :param num_classes: the number of classes of the model.
    :param sizes: per image, ``(width, height)`` in pixels, to bring predictions to pixels
        (``image_size`` reads it from the image bytes).
    :returns: the mean over the classes that have reference objects of each class's average
        precision (all-point interpolation; a detection matches the unmatched reference of its class
        it overlaps most, when the overlap reaches the threshold; further hits on it are false positives).
    :raises ValueError: when the three sequences differ in length or there is no reference object.
    """
    if not len(predictions) == len(references) == len(sizes):
        raise ValueError(
            f"predictions ({len(predictions)}), references ({len(references)}) and sizes ({len(sizes)})"
            " must have one entry per image"
        )
    # Per class: (score, image, box) detections and image -> reference boxes.
    detections: list[list[tuple[float, int, np.ndarray]]] = [[] for _ in range(num_classes)]
    truth: list[dict[int, np.ndarray]] = [{} for _ in range(num_classes)]
    for image, (response, boxes, (width, height)) in enumerate(
        zip(predictions, references, sizes, strict=True)
    ):
        scale = np.array([width, height, width, height], dtype=np.float64)
        for row in response.get("prediction", []):
            class_id = int(row[0])
            if 0 <= class_id < num_classes:
                detections[class_id].append(
                    (float(row[1]), image, np.asarray(row[2:6], dtype=np.float64) * scale)
                )
        per_class: dict[int, list[list[float]]] = {}
        for box in boxes:
            left, top = float(box["left"]), float(box["top"])
            corners = [left, top, left + float(box["width"]), top + float(box["height"])]
            per_class.setdefault(int(box["class_id"]), []).append(corners)
        for class_id, corners_list in per_class.items():
            if 0 <= class_id < num_classes:
                truth[class_id][image] = np.asarray(corners_list, dtype=np.float64)
    precisions: list[float] = []
    for class_id in range(num_classes):
        total = sum(len(boxes) for boxes in truth[class_id].values())
        if total == 0:
            continue  # no reference object: the class's AP is undefined and left out of the mean
        matched = {image: np.zeros(len(boxes), dtype=bool) for image, boxes in truth[class_id].items()}
        # A stable sort keeps ties in input order, so the result does not depend on luck.
        ranked = sorted(detections[class_id], key=lambda item: -item[0])
        hits = np.zeros(len(ranked))
        for rank, (_score, image, box) in enumerate(ranked):
            boxes = truth[class_id].get(image)
            if boxes is None:
                continue
            overlaps = box_iou(box, boxes)
            best = int(np.argmax(overlaps))
            if overlaps[best] >= iou_threshold and not matched[image][best]:
                matched[image][best] = True
                hits[rank] = 1.0
        true_positives = np.cumsum(hits)
        recall = true_positives / total
        precision = true_positives / np.arange(1, len(ranked) + 1) if ranked else np.zeros(0)
        precisions.append(average_precision(recall, precision))
    if not precisions:
        raise ValueError("no reference object in any image: mAP is undefined")
    return float(np.mean(precisions))
