"""Class lists: the 20 PASCAL VOC classes of the seed's model, or a custom list from a file."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)


class ClassListError(ValueError):
    """A class list is empty, has blanks or duplicates, or cannot be read."""


def validate_class_names(names: Sequence[str], source: str = "class list") -> tuple[str, ...]:
    """Return ``names`` as a tuple after checking it is non-empty, with no blank or repeated name."""
    if isinstance(names, str) or not names:
        raise ClassListError(f"{source}: expected a non-empty list of class names")
    cleaned: list[str] = []
    for index, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise ClassListError(f"{source}: class {index} is not a non-empty string: {name!r}")
        if name.strip() in cleaned:
            raise ClassListError(f"{source}: class {name.strip()!r} appears more than once")
        cleaned.append(name.strip())
    return tuple(cleaned)


def load_class_names(path: str | Path) -> tuple[str, ...]:
    """Load class names in id order from a JSON list or a text file with one name per line.

    Blank lines and lines starting with ``#`` are ignored in text files.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ClassListError(f"cannot read class list {path}: {err}") from err
    if path.suffix == ".json":
        try:
            names = json.loads(text)
        except json.JSONDecodeError as err:
            raise ClassListError(f"{path}: not valid JSON: {err}") from err
        if not isinstance(names, list):
            raise ClassListError(f"{path}: expected a JSON list of class names")
    else:
        names = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return validate_class_names(names, source=str(path))


def class_map(names: Sequence[str]) -> dict[str, str]:
    """The Ground Truth ``class-map``: string class id -> name, as in the seed's manifest."""
    return {str(class_id): name for class_id, name in enumerate(names)}
