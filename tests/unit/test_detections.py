from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from active_learning.classes import VOC_CLASSES
from active_learning.detections import (
    Detection,
    PredictionParseError,
    clip_box,
    iou,
    parse_prediction,
    to_pixel_boxes,
    top_score,
)

BODY = {"prediction": [[1.0, 0.245, 0.27, 0.24, 0.99, 0.93], [14.0, 0.61, 0.1, 0.1, 0.2, 0.5]]}


@pytest.mark.parametrize("body", [BODY, json.dumps(BODY), json.dumps(BODY).encode()])
def test_parse_accepts_bytes_str_and_dict_and_sorts_by_score(body: object) -> None:
    detections = parse_prediction(body)  # type: ignore[arg-type]
    assert [d.class_id for d in detections] == [14, 1]
    assert detections[1] == Detection(1, 0.245, 0.27, 0.24, 0.99, 0.93)
    assert top_score(detections) == 0.61


def test_empty_prediction_is_no_detection() -> None:
    assert parse_prediction(b'{"prediction": []}') == []
    assert top_score([]) is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xff\xfe", "UTF-8"),
        ("not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"predictions": []}', "no 'prediction' key"),
        ('{"prediction": {}}', "must be a list"),
        ('{"prediction": [[1, 0.5, 0, 0, 1]]}', r"prediction\[0\] must be"),
        ('{"prediction": [[1, "0.5", 0, 0, 1, 1]]}', "not a finite number"),
        ('{"prediction": [[1.5, 0.5, 0, 0, 1, 1]]}', "class id"),
        ('{"prediction": [[-1, 0.5, 0, 0, 1, 1]]}', "class id"),
        ('{"prediction": [[1, 1.5, 0, 0, 1, 1]]}', "outside 0..1"),
        ('{"prediction": [[1, 0.5, 0.6, 0, 0.5, 1]]}', "inverted"),
        ('{"prediction": [[1, NaN, 0, 0, 1, 1]]}', "finite"),
    ],
)
def test_malformed_bodies_raise_a_value_error_saying_what_is_wrong(body: object, message: str) -> None:
    with pytest.raises(PredictionParseError, match=message) as excinfo:
        parse_prediction(body)  # type: ignore[arg-type]
    assert isinstance(excinfo.value, ValueError)


def test_pixel_boxes_for_the_seeds_bicycle() -> None:
    detection = Detection(1, 0.245, 1042 / 3911, 627 / 2608, (1042 + 2869) / 3911, (627 + 1801) / 2608)
    assert to_pixel_boxes([detection], 3911, 2608, VOC_CLASSES) == [
        {"label": "bicycle", "left": 1042, "top": 627, "width": 2869, "height": 1801}
    ]


def test_pixel_boxes_are_clipped_and_empty_ones_dropped() -> None:
    detections = [
        Detection(0, 0.9, -0.1, -0.2, 0.5, 0.5),
        Detection(0, 0.9, 1.2, 0.1, 1.3, 0.2),  # entirely outside
        Detection(0, 0.1, 0.1, 0.1, 0.2, 0.2),  # below min_score
    ]
    assert to_pixel_boxes(detections, 100, 50, ["cat"], min_score=0.2) == [
        {"label": "cat", "left": 0, "top": 0, "width": 50, "height": 25}
    ]


def test_pixel_boxes_reject_unknown_class_and_bad_size() -> None:
    with pytest.raises(ValueError, match="class id 3"):
        to_pixel_boxes([Detection(3, 0.9, 0, 0, 1, 1)], 10, 10, ["a", "b"])
    with pytest.raises(ValueError, match="positive"):
        to_pixel_boxes([], 0, 10, ["a"])


def test_iou() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0


coordinates = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(coordinates, coordinates, coordinates, coordinates, st.integers(1, 5000), st.integers(1, 5000))
def test_clipped_boxes_always_lie_inside_the_image(
    x0: float, y0: float, x1: float, y1: float, width: int, height: int
) -> None:
    clipped = clip_box(x0, y0, x1, y1, width, height)
    if clipped is None:
        return
    left, top, box_width, box_height = clipped
    assert all(isinstance(v, int) for v in clipped)
    assert left >= 0
    assert top >= 0
    assert box_width > 0
    assert box_height > 0
    assert left + box_width <= width
    assert top + box_height <= height
