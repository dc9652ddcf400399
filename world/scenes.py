"""Synthetic scenes with reference boxes: the emulator's stand-in for a labelled image dataset.

A scene is a textured grey background with one to three filled shapes. Each shape's class is
told by its colour only: class ``i`` of ``n`` sits at hue ``i / n`` on the colour wheel, and each
object's hue is drawn around it with a spread wide enough that neighbouring classes overlap a
little. A model that has seen few objects is therefore unsure or wrong on part of the scenes,
while one that has seen hundreds is mostly right -- which is what an active-learning demo needs.

How hard a world is -- its classes, how often each occurs, how far hues spread -- is a
:class:`World`; :data:`EASY_WORLD` (4 classes) is solved by a dozen boxes, :data:`DEMO_WORLD`
(the 20 VOC classes, long-tailed, wider hues) takes many days of labels.
"""

from __future__ import annotations

import colorsys
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

DEMO_CLASSES: tuple[str, ...] = ("bicycle", "car", "dog", "person")
# The seed model's 20 Pascal VOC classes (the emulator never imports the product's copy).
VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip

JPEG_QUALITY = 90
MIN_SIDE = 12  # pixels: the smallest object side
MAX_OBJECTS = 3
# Free pixels kept between objects so that they never touch and stay separate regions.
OBJECT_GAP = 4
# Spread of an object's hue around its class hue, as a share of the hue step between classes:
# at 1/4 about 5% of objects fall nearer a neighbouring class's hue than their own.
HUE_SPREAD = 1 / 4
PIXEL_NOISE = 5.0  # grey levels, per pixel, on background and objects alike


def long_tail(count: int, exponent: float = 1.2, seed: int = 0) -> tuple[float, ...]:
    """Class frequencies of a long-tailed (Zipf) mix: the ``k``-th commonest class occurs about
    ``k ** -exponent`` as often as the commonest. Ranks are shuffled over the classes, so rare
    classes are not all neighbours on the colour wheel."""
    ranks = np.random.default_rng(seed).permutation(count) + 1
    weights = ranks.astype(np.float64) ** -exponent
    return tuple(float(w) for w in weights / weights.sum())


@dataclass(frozen=True)
class World:
    """The difficulty knobs of a synthetic world, in one place.

    :param classes: class names, in id order.
    :param class_weights: how often each class occurs (normalized); ``None``: all equally often.
    :param hue_spread: spread of an object's hue around its class's, as a share of the hue step
        between neighbouring classes: the wider, the more objects look like a neighbouring class.
    """

    classes: tuple[str, ...] = DEMO_CLASSES
    class_weights: tuple[float, ...] | None = None
    hue_spread: float = HUE_SPREAD

    def __post_init__(self) -> None:
        if not self.classes:
            raise ValueError("classes must not be empty")
        if self.class_weights is not None and (
            len(self.class_weights) != len(self.classes)
            or min(self.class_weights) < 0
            or sum(self.class_weights) <= 0
        ):
            raise ValueError("class_weights must be one non-negative weight per class, not all zero")
        if self.hue_spread < 0:
            raise ValueError(f"hue_spread must be >= 0, got {self.hue_spread}")

    def draw_class(self, rng: np.random.Generator) -> int:
        if self.class_weights is None:
            return int(rng.integers(0, len(self.classes)))
        weights = np.asarray(self.class_weights, dtype=np.float64)
        return int(rng.choice(len(self.classes), p=weights / weights.sum()))


# The old demo world: 4 classes, all equally common, far apart in hue. Solved by a dozen boxes.
EASY_WORLD = World(DEMO_CLASSES)
# The 20 VOC classes, all equally common: more to learn, neighbours closer in hue.
VOC_WORLD = World(VOC_CLASSES)
# The 20 VOC classes in a long-tailed mix, with hues spread wider, so a weak model confuses neighbours.
LONG_TAIL_WORLD = World(VOC_CLASSES, long_tail(len(VOC_CLASSES)), hue_spread=0.35)
# What make demo (and docker-compose's seed) runs on: a world not solved on day 1.
DEMO_WORLD = LONG_TAIL_WORLD
# By name, for command lines (make demo --world easy).
WORLDS: dict[str, World] = {
    "demo": DEMO_WORLD,
    "easy": EASY_WORLD,
    "voc": VOC_WORLD,
    "long-tail": LONG_TAIL_WORLD,
}


def class_colour(
    class_id: int, num_classes: int, rng: np.random.Generator | None = None, hue_spread: float = HUE_SPREAD
) -> np.ndarray:
    """An RGB colour (floats 0..255) for an object of ``class_id``; the class's mean when ``rng`` is None."""
    if not 0 <= class_id < num_classes:
        raise ValueError(f"class_id must be within 0..{num_classes - 1}, got {class_id}")
    hue = class_id / num_classes
    saturation, value = 0.72, 0.75
    if rng is not None:
        hue += rng.normal(0.0, hue_spread / num_classes)
        # Saturated and bright enough that an object never fades into the grey background.
        saturation = rng.uniform(0.55, 0.9)
        value = rng.uniform(0.6, 0.9)
    red, green, blue = colorsys.hsv_to_rgb(hue % 1.0, saturation, value)
    return np.array([red, green, blue]) * 255.0


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A grey-ish, slightly tinted background with low-frequency blotches and pixel noise."""
    grey = rng.uniform(95.0, 165.0)
    tint = rng.normal(0.0, 4.0, size=3)
    cells = max(2, size // 12)
    coarse = rng.normal(0.0, 7.0, size=(cells, cells)).astype(np.float32)
    # Bilinear upsampling of a coarse random grid gives a smooth, cloudy texture.
    texture = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BILINEAR))
    image = grey + tint[None, None, :] + texture[:, :, None]
    return image + rng.normal(0.0, PIXEL_NOISE, size=(size, size, 3))


def _shape_mask(rng: np.random.Generator, size: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """A filled rectangle or ellipse inside ``box`` (left, top, width, height), as a boolean mask."""
    left, top, width, height = box
    mask = np.zeros((size, size), dtype=bool)
    if rng.random() < 0.5:
        mask[top : top + height, left : left + width] = True
        return mask
    ys, xs = np.mgrid[0:height, 0:width]
    # Pixel centres against an ellipse inscribed in the box.
    ry, rx = height / 2.0, width / 2.0
    inside = ((xs + 0.5 - rx) / rx) ** 2 + ((ys + 0.5 - ry) / ry) ** 2 <= 1.0
    mask[top : top + height, left : left + width] = inside
    return mask


def _place_boxes(rng: np.random.Generator, size: int, count: int) -> list[tuple[int, int, int, int]]:
    """Up to ``count`` boxes that keep ``OBJECT_GAP`` pixels apart (at least one is always placed)."""
    max_side = max(MIN_SIDE, int(size * 0.42))
    boxes: list[tuple[int, int, int, int]] = []
    for _ in range(40 * count):
        if len(boxes) == count:
            break
        width = int(rng.integers(MIN_SIDE, max_side + 1))
        height = int(rng.integers(MIN_SIDE, max_side + 1))
        left = int(rng.integers(0, size - width + 1))
        top = int(rng.integers(0, size - height + 1))
        clear = all(
            left + width + OBJECT_GAP <= ol
            or ol + ow + OBJECT_GAP <= left
            or top + height + OBJECT_GAP <= ot
            or ot + oh + OBJECT_GAP <= top
            for ol, ot, ow, oh in boxes
        )
        if clear:
            boxes.append((left, top, width, height))
    return boxes


def generate_scene(
    rng: np.random.Generator, classes: Sequence[str] | World, size: int = 96
) -> tuple[bytes, list[dict]]:
    """One ``size`` x ``size`` JPEG scene and its reference boxes.

    :param classes: the world (or only its class names: a world where all are equally common).
    :returns: the JPEG bytes and ``[{"label", "class_id", "left", "top", "width", "height"}]``,
        integer pixels, the box being the tight extent of the object's pixels.
    """
    world = classes if isinstance(classes, World) else World(tuple(classes))
    if size < 2 * MIN_SIDE:
        raise ValueError(f"size must be at least {2 * MIN_SIDE} pixels, got {size}")
    image = _background(rng, size)
    references: list[dict] = []
    count = int(rng.integers(1, MAX_OBJECTS + 1))
    for box in _place_boxes(rng, size, count):
        class_id = world.draw_class(rng)
        mask = _shape_mask(rng, size, box)
        colour = class_colour(class_id, len(world.classes), rng, world.hue_spread)
        image[mask] = colour + rng.normal(0.0, PIXEL_NOISE, size=(int(mask.sum()), 3))
        ys, xs = np.nonzero(mask)
        references.append(
            {
                "label": world.classes[class_id],
                "class_id": class_id,
                "left": int(xs.min()),
                "top": int(ys.min()),
                "width": int(xs.max() - xs.min() + 1),
                "height": int(ys.max() - ys.min() + 1),
            }
        )
    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.rint(image), 0, 255).astype(np.uint8)).save(
        buffer, format="JPEG", quality=JPEG_QUALITY
    )
    return buffer.getvalue(), references


def make_scenes(
    seed: int, count: int, classes: Sequence[str] | World = DEMO_CLASSES
) -> list[tuple[bytes, list[dict]]]:
    """``count`` scenes, the same for the same ``seed`` and world (or class names)."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    rng = np.random.default_rng(seed)
    return [generate_scene(rng, classes) for _ in range(count)]
