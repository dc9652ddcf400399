"""A small, real object detector in NumPy and Pillow: what the emulator's endpoints serve and train.

Detection works from pixels: pixels that stand out from the image's background statistics form
the foreground; its connected regions are the detected objects, their bounding boxes the boxes.
Each region is described by its mean colour and classified against learned class prototypes with
a Gaussian model whose parameters have a conjugate prior. Because the prior dominates while few
objects have been seen, a model trained on a handful of boxes is broad and unsure (low scores),
and the scores sharpen as labelled boxes accumulate -- the behaviour active learning relies on.

The parameters are sufficient statistics (per-class counts, sums and sums of squares). Training
from a previous model counts each label of the training set once: the new model is the base
model's knowledge as a prior of bounded weight (at most :data:`PRIOR_MODEL_WEIGHT` objects per
class) plus every label of the training set, once. A model keeps the prior it was trained on, so
the next training, on every label so far again, starts from that same prior: a label seen on 8
days weighs what a label seen once does, as when a network is trained again from its previous
weights on the full dataset.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, UnidentifiedImageError

ARTIFACT_MEMBER = "model.json"
ARTIFACT_FORMAT = "emulator-local-detector"
ARTIFACT_VERSION = 2  # 2: the prior a model was trained on (version 1 had none; still read)

# Images are analysed at most this large: outputs are normalized, so detail beyond it only costs time.
MAX_ANALYSIS_SIDE = 256
# A pixel is foreground when its squared, spread-normalized distance from the background colour
# exceeds this (5.5 spreads over three channels).
FOREGROUND_THRESHOLD = 30.0
# Grey levels: a floor on the background's spread. Smooth texture makes the median absolute
# deviation understate how far background drifts; without the floor, cloudy patches of a plain
# background become detections (a quarter of the synthetic backgrounds at a floor of 3).
MIN_NOISE = 9.0
MIN_REGION_SHARE = 0.004  # of the image's pixels: smaller regions are specks, not objects
RUNNER_UP_MIN_SCORE = 0.01

# The conjugate prior: class means start at mid-grey with the weight of PRIOR_MEAN_WEIGHT objects,
# the per-channel spread at PRIOR_SPREAD with the weight of PRIOR_SPREAD_WEIGHT objects.
PRIOR_MEAN = (128.0, 128.0, 128.0)
PRIOR_MEAN_WEIGHT = 1.0
PRIOR_SPREAD = 85.0
PRIOR_SPREAD_WEIGHT = 25.0
# The most a base model counts for, in objects per class, in a training that continues from it.
PRIOR_MODEL_WEIGHT = 8.0


@dataclass(frozen=True, slots=True)
class Region:
    """One detected foreground region: its box (pixels, exclusive right/bottom) and mean colour."""

    left: int
    top: int
    right: int
    bottom: int
    colour: np.ndarray


@dataclass(frozen=True, slots=True)
class _Analysis:
    """An image prepared for detection: RGB floats, its foreground, and the scale to the original."""

    pixels: np.ndarray
    foreground: np.ndarray
    scale: float


def _decode(image_bytes: bytes) -> tuple[np.ndarray, float]:
    """RGB floats of the image, shrunk to ``MAX_ANALYSIS_SIDE``, and the factor original -> analysed."""
    try:
        with Image.open(io.BytesIO(image_bytes)) as image:
            image.load()
            rgb = image.convert("RGB")
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as err:
        raise ValueError(f"not a readable image: {err}") from err
    scale = min(1.0, MAX_ANALYSIS_SIDE / max(rgb.size))
    if scale < 1.0:
        size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
        rgb = rgb.resize(size, Image.Resampling.BOX)
    return np.asarray(rgb, dtype=np.float32), scale


def _box_mean(values: np.ndarray) -> np.ndarray:
    """3x3 mean over the first two axes (edges replicated), via summed shifts."""
    padded = np.pad(values, [(1, 1), (1, 1)] + [(0, 0)] * (values.ndim - 2), mode="edge")
    height, width = values.shape[:2]
    total = sum(padded[dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3))
    return total / 9.0


def foreground_mask(pixels: np.ndarray) -> np.ndarray:
    """Pixels that differ from the background statistics (the image's median colour and spread)."""
    smoothed = _box_mean(pixels)  # averages pixel noise away before thresholding
    flat = smoothed.reshape(-1, 3)
    # Median and MAD are robust: objects cover well under half of the image.
    centre = np.median(flat, axis=0)
    spread = np.maximum(1.4826 * np.median(np.abs(flat - centre), axis=0), MIN_NOISE)
    distance = (((smoothed - centre) / spread) ** 2).sum(axis=2)
    mask = distance > FOREGROUND_THRESHOLD
    # A 3x3 majority vote removes isolated specks and fills pinholes.
    return _box_mean(mask.astype(np.float32)) > 0.5


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a boolean mask: (labels 1..n, 0 for background; n).

    Works on horizontal runs with a union-find, so Python loops only over runs, not pixels.
    """
    height, width = mask.shape

    def find(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    # All runs at once: +1/-1 steps of each zero-padded row, in row-major order.
    steps = np.diff(np.pad(mask.astype(np.int8), ((0, 0), (1, 1))), axis=1)
    rows, starts = np.nonzero(steps == 1)
    ends = np.nonzero(steps == -1)[1]
    runs = list(zip(rows.tolist(), starts.tolist(), ends.tolist(), strict=True))
    parent = list(range(len(runs)))
    previous: list[int] = []  # run ids of the previous row
    current: list[int] = []
    current_row = -1
    for run_id, (row, start, end) in enumerate(runs):
        if row != current_row:
            previous = current if row == current_row + 1 else []
            current, current_row = [], row
        for prev_id in previous:
            _, prev_start, prev_end = runs[prev_id]
            # Diagonal neighbours count: runs touch when they overlap after widening by one.
            if prev_start <= end and start <= prev_end:
                root_a, root_b = find(run_id), find(prev_id)
                if root_a != root_b:
                    parent[max(root_a, root_b)] = min(root_a, root_b)
        current.append(run_id)
    labels = np.zeros((height, width), dtype=np.int32)
    numbers: dict[int, int] = {}
    for run_id, (row, start, end) in enumerate(runs):
        root = find(run_id)
        number = numbers.setdefault(root, len(numbers) + 1)
        labels[row, start:end] = number
    return labels, len(numbers)


def _analyse(image_bytes: bytes) -> _Analysis:
    """Decode an image and find its foreground: the shared first step of prediction and training."""
    pixels, scale = _decode(image_bytes)
    return _Analysis(pixels, foreground_mask(pixels), scale)


def _regions(analysis: _Analysis) -> list[Region]:
    """The foreground's connected regions large enough to be objects, in the analysed image's pixels."""
    labels, count = label_components(analysis.foreground)
    if count == 0:
        return []
    height, width = labels.shape
    min_area = max(4, round(MIN_REGION_SHARE * height * width))
    ys, xs = np.nonzero(labels)
    ids = labels[ys, xs]
    # Per-component areas, colour sums and extents in a few vectorized passes, however many specks.
    areas = np.bincount(ids, minlength=count + 1)
    sums = np.stack(
        [
            np.bincount(ids, weights=analysis.pixels[ys, xs, channel], minlength=count + 1)
            for channel in range(3)
        ],
        axis=1,
    )
    lefts, tops = np.full(count + 1, width), np.full(count + 1, height)
    rights, bottoms = np.zeros(count + 1, dtype=np.int64), np.zeros(count + 1, dtype=np.int64)
    np.minimum.at(lefts, ids, xs)
    np.minimum.at(tops, ids, ys)
    np.maximum.at(rights, ids, xs + 1)
    np.maximum.at(bottoms, ids, ys + 1)
    return [
        Region(int(lefts[n]), int(tops[n]), int(rights[n]), int(bottoms[n]), sums[n] / areas[n])
        for n in range(1, count + 1)
        if areas[n] >= min_area
    ]


def _box_colour(analysis: _Analysis, annotation: dict) -> np.ndarray | None:
    """Mean colour of the foreground pixels inside a labelled box (all its pixels if too few are)."""
    height, width = analysis.foreground.shape
    scale = analysis.scale
    try:
        left = float(annotation["left"]) * scale
        top = float(annotation["top"]) * scale
        right = left + float(annotation["width"]) * scale
        bottom = top + float(annotation["height"]) * scale
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"annotation needs numeric left/top/width/height: {annotation!r}") from err
    x0, y0 = max(0, math.floor(left)), max(0, math.floor(top))
    x1, y1 = min(width, math.ceil(right)), min(height, math.ceil(bottom))
    if x1 <= x0 or y1 <= y0:
        return None  # the box lies outside the image: nothing to learn from
    inside = analysis.pixels[y0:y1, x0:x1]
    chosen = analysis.foreground[y0:y1, x0:x1]
    # Labellers' boxes include background corners (ellipses) and slack; the object is the foreground.
    if int(chosen.sum()) >= max(4, chosen.size // 10):
        return inside[chosen].mean(axis=0)
    return inside.reshape(-1, 3).mean(axis=0)


@dataclass(slots=True)
class LocalDetector:
    """Class prototypes learned from labelled boxes, kept as sufficient statistics.

    :param classes: class names, in class-id order.
    :param n_seen: objects seen per class.
    :param sums: per class, the sum of the objects' mean colours (RGB).
    :param squares: per class, the sum of the squared mean colours (RGB).
    :param temperature: divides the log-posteriors before the softmax (1: the Bayesian posterior).
    :param prior: the part of ``(n_seen, sums, squares)`` that came from the base model it was
        trained from (``None``: trained from nothing, or not trained); the rest is its labels.
    """

    classes: list[str]
    n_seen: list[float] = field(default_factory=list)
    sums: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    squares: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    temperature: float = 1.0
    prior: tuple[list[float], np.ndarray, np.ndarray] | None = None

    def __post_init__(self) -> None:
        count = len(self.classes)
        if count == 0:
            raise ValueError("a detector needs at least one class")
        if len(set(self.classes)) != count:
            raise ValueError(f"class names must be unique: {self.classes}")
        # Omitted statistics mean an untrained model: nothing seen yet.
        self.n_seen = [_count(n) for n in self.n_seen] or [0] * count
        self.sums = np.asarray(self.sums, dtype=np.float64)
        self.squares = np.asarray(self.squares, dtype=np.float64)
        if self.sums.size == 0:
            self.sums = np.zeros((count, 3))
        if self.squares.size == 0:
            self.squares = np.zeros((count, 3))
        if len(self.n_seen) != count or self.sums.shape != (count, 3) or self.squares.shape != (count, 3):
            raise ValueError(f"parameters do not match {count} classes")
        if any(n < 0 for n in self.n_seen):
            raise ValueError(f"n_seen must be >= 0, got {self.n_seen}")
        if self.prior is not None:
            n_prior, sums_prior, squares_prior = self.prior
            self.prior = (
                [_count(n) for n in n_prior],
                np.asarray(sums_prior, dtype=np.float64),
                np.asarray(squares_prior, dtype=np.float64),
            )
            if (
                len(self.prior[0]) != count
                or self.prior[1].shape != (count, 3)
                or self.prior[2].shape
                != (
                    count,
                    3,
                )
            ):
                raise ValueError(f"prior parameters do not match {count} classes")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be a positive number, got {self.temperature}")

    @property
    def means(self) -> np.ndarray:
        """Posterior class means (RGB): the prior mean until objects of the class are seen."""
        counts = np.asarray(self.n_seen, dtype=np.float64)[:, None]
        return (PRIOR_MEAN_WEIGHT * np.asarray(PRIOR_MEAN) + self.sums) / (PRIOR_MEAN_WEIGHT + counts)

    @property
    def variance(self) -> np.ndarray:
        """Posterior within-class variance per channel, shared by the classes."""
        counts = np.asarray(self.n_seen, dtype=np.float64)[:, None]
        safe = np.maximum(counts, 1.0)
        scatter = np.maximum(self.squares - self.sums**2 / safe, 0.0).sum(axis=0)
        dof = sum(n - 1 for n in self.n_seen if n > 0)
        return (PRIOR_SPREAD_WEIGHT * PRIOR_SPREAD**2 + scatter) / (PRIOR_SPREAD_WEIGHT + dof)

    def class_probabilities(self, colours: np.ndarray) -> np.ndarray:
        """Posterior class probabilities (rows) for mean colours (rows of RGB)."""
        counts = np.asarray(self.n_seen, dtype=np.float64)
        # Predictive variance: the spread of objects plus the uncertainty of each class mean.
        variance = self.variance[None, :] * (1.0 + 1.0 / (PRIOR_MEAN_WEIGHT + counts))[:, None]
        deltas = colours[:, None, :] - self.means[None, :, :]
        log_likelihood = -0.5 * ((deltas**2) / variance[None] + np.log(variance)[None]).sum(axis=2)
        log_prior = np.log((counts + 1.0) / (counts.sum() + len(counts)))
        logits = (log_likelihood + log_prior[None, :]) / self.temperature
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return weights / weights.sum(axis=1, keepdims=True)

    def predict(self, image_bytes: bytes) -> dict:
        """Detections in the built-in object-detection algorithm's response format.

        ``{"prediction": [[class_id, score, xmin, ymin, xmax, ymax], ...]}`` with corners
        normalized to 0..1, best score first. Each region yields its top class and, like SSD's
        overlapping candidates, its runner-up class as a second, lower-scored detection.

        :raises ValueError: when the bytes are not an image.
        """
        analysis = _analyse(image_bytes)
        regions = _regions(analysis)
        if not regions:
            return {"prediction": []}
        height, width = analysis.foreground.shape
        probabilities = self.class_probabilities(np.stack([region.colour for region in regions]))
        rows: list[list[float]] = []
        for region, probs in zip(regions, probabilities, strict=True):
            corners = [region.left / width, region.top / height, region.right / width, region.bottom / height]
            ranked = np.argsort(-probs)
            for rank, class_id in enumerate(ranked[:2]):
                score = float(probs[class_id])
                if rank == 1 and score < RUNNER_UP_MIN_SCORE:
                    break
                rows.append([float(class_id), round(score, 6), *(round(value, 6) for value in corners)])
        rows.sort(key=lambda row: row[1], reverse=True)
        return {"prediction": rows}

    def to_json(self) -> dict:
        """The parameters as a JSON-ready dict (what ``model.json`` holds)."""
        return {
            "format": ARTIFACT_FORMAT,
            "version": ARTIFACT_VERSION,
            "classes": list(self.classes),
            "n_seen": list(self.n_seen),
            "sums": self.sums.tolist(),
            "squares": self.squares.tolist(),
            "temperature": self.temperature,
            "prior": None
            if self.prior is None
            else {
                "n_seen": list(self.prior[0]),
                "sums": self.prior[1].tolist(),
                "squares": self.prior[2].tolist(),
            },
        }

    def to_artifact(self) -> bytes:
        """A ``model.tar.gz`` (gzip tar archive) holding ``model.json``; equal models give equal bytes."""
        payload = json.dumps(self.to_json(), indent=1).encode()
        info = tarfile.TarInfo(ARTIFACT_MEMBER)
        info.size = len(payload)
        info.mode = 0o644
        buffer = io.BytesIO()
        # mtime 0 throughout keeps the artifact byte-stable, so equal models have equal ETags.
        with (
            gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as zipped,
            tarfile.open(fileobj=zipped, mode="w") as archive,
        ):
            archive.addfile(info, io.BytesIO(payload))
        return buffer.getvalue()

    @classmethod
    def from_json(cls, document: object) -> LocalDetector:
        """A detector from ``to_json``'s dict; ValueError when it is not one."""
        if not isinstance(document, dict) or document.get("format") != ARTIFACT_FORMAT:
            raise ValueError(f"model.json is not a model of format {ARTIFACT_FORMAT!r}")
        if document.get("version") not in (1, ARTIFACT_VERSION):
            raise ValueError(f"unsupported model.json version {document.get('version')!r}")
        try:
            classes = [str(name) for name in document["classes"]]
            n_seen = [_count(n) for n in document["n_seen"]]
            sums = np.asarray(document["sums"], dtype=np.float64)
            squares = np.asarray(document["squares"], dtype=np.float64)
            temperature = float(document.get("temperature", 1.0))
            stored = document.get("prior")
            prior = (
                None
                if stored is None
                else (
                    [_count(n) for n in stored["n_seen"]],
                    np.asarray(stored["sums"], dtype=np.float64),
                    np.asarray(stored["squares"], dtype=np.float64),
                )
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"model.json has missing or malformed parameters: {err}") from err
        arrays = [sums, squares] + ([] if prior is None else [prior[1], prior[2]])
        if not all(np.isfinite(array).all() for array in arrays):
            raise ValueError("model.json parameters must be finite numbers")
        return cls(classes, n_seen, sums, squares, temperature, prior)

    @classmethod
    def from_artifact(cls, data: bytes) -> LocalDetector:
        """A detector from a ``model.tar.gz``.

        :raises ValueError: when the data is not a gzip tar archive with a valid ``model.json``.
        """
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
                member = archive.extractfile(ARTIFACT_MEMBER)
                if member is None:
                    raise ValueError(f"model artifact's {ARTIFACT_MEMBER} is not a regular file")
                payload = member.read()
        except KeyError as err:
            raise ValueError(f"model artifact has no {ARTIFACT_MEMBER}") from err
        except (tarfile.TarError, OSError, EOFError) as err:
            raise ValueError(f"model artifact is not a gzip tar archive: {err}") from err
        try:
            document = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"model artifact's {ARTIFACT_MEMBER} is not JSON: {err}") from err
        return cls.from_json(document)


def _count(value: object) -> float | int:
    """A count as stored: an int when whole (labels), a float for a scaled prior."""
    number = float(value)  # type: ignore[arg-type]
    return int(number) if number.is_integer() else number


def _capped(model: LocalDetector, weight: float) -> tuple[list[float], np.ndarray, np.ndarray]:
    """The model's statistics scaled so that no class counts for more than ``weight`` objects."""
    counts = np.asarray(model.n_seen, dtype=np.float64)
    scale = np.minimum(1.0, weight / np.maximum(counts, 1e-12))
    return (counts * scale).tolist(), model.sums * scale[:, None], model.squares * scale[:, None]


def train(
    previous: LocalDetector | None,
    samples: Iterable[tuple[bytes, list[dict]]],
    classes: Sequence[str],
    epochs: int = 1,
) -> LocalDetector:
    """Learn class prototypes from labelled boxes, continuing from ``previous`` when given.

    From ``previous``: its prior (or, for a model trained from nothing, its own statistics capped
    at :data:`PRIOR_MODEL_WEIGHT` objects per class) plus each box of ``samples`` once; pass every
    label so far, as the DAG's training does.

    :param samples: ``(image bytes, annotations)``; annotations as in an augmented manifest line:
        ``class_id``, ``left``, ``top``, ``width``, ``height`` in pixels.
    :param epochs: accepted for the training-job hyperparameter; the statistics are exact after one
        pass, so further passes would only count the same boxes again and are not made.
    :raises ValueError: on a class list that differs from ``previous``'s, a class id out of range,
        an unreadable image or a malformed annotation.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    names = list(classes)
    if previous is not None and previous.classes != names:
        raise ValueError(f"previous model's classes {previous.classes} differ from {names}")
    if previous is None:
        model = LocalDetector(names)
    else:
        prior = previous.prior or _capped(previous, PRIOR_MODEL_WEIGHT)
        n_prior, sums_prior, squares_prior = prior
        model = LocalDetector(
            names, list(n_prior), sums_prior.copy(), squares_prior.copy(), previous.temperature, prior
        )
    for index, (image_bytes, boxes) in enumerate(samples):
        if not boxes:
            continue
        try:
            analysis = _analyse(image_bytes)
        except ValueError as err:
            raise ValueError(f"sample {index}: {err}") from err
        for annotation in boxes:
            try:
                class_id = int(annotation["class_id"])
            except (KeyError, TypeError, ValueError) as err:
                raise ValueError(
                    f"sample {index}: annotation needs an integer class_id: {annotation!r}"
                ) from err
            if not 0 <= class_id < len(names):
                raise ValueError(f"sample {index}: class_id {class_id} is outside 0..{len(names) - 1}")
            colour = _box_colour(analysis, annotation)
            if colour is None:
                continue
            model.n_seen[class_id] += 1
            model.sums[class_id] += colour
            model.squares[class_id] += colour**2
    return model
