"""The backend-neutral review core: Label Studio tasks and A2I outputs give the same manifest line."""

from __future__ import annotations

from typing import Any

import pytest

from active_learning.manifest import (
    ManifestConversionError,
    convert_a2i_output,
    convert_review,
    label_studio_review,
)
from active_learning.reviews import ReviewRequest, label_studio_status

CLASSES = ("cat", "dog")
SOURCE = "s3://bucket/active-learning/incoming/2026-01-01/a.png"


def rect(label: str, left: float, top: float, width: float, height: float, **value: Any) -> dict[str, Any]:
    """A Label Studio result on a 200x100 image, from pixels."""
    return {
        "type": "rectanglelabels",
        "from_name": "label",
        "to_name": "image",
        "original_width": 200,
        "original_height": 100,
        "value": {
            "x": left / 2,
            "y": top,
            "width": width / 2,
            "height": height,
            "rotation": 0,
            "rectanglelabels": [label],
            **value,
        },
    }


def task(*annotations: list[dict[str, Any]], cancelled: int = 0) -> dict[str, Any]:
    return {
        "id": 7,
        "data": {"name": "al-2026-01-01-abc", "source": SOURCE, "width": 200, "height": 100},
        "annotations": [
            {"result": result, "updated_at": f"2026-01-02T10:0{n}:00Z", "was_cancelled": False}
            for n, result in enumerate(annotations)
        ]
        + [{"result": [], "updated_at": "2026-01-02T11:00:00Z", "was_cancelled": True}] * cancelled,
    }


def a2i_output(*answers: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "humanLoopName": "al-2026-01-01-abc",
        "inputContent": {"taskObject": SOURCE},
        "humanAnswers": [
            {
                "answerContent": {
                    "annotatedResult": {
                        "boundingBoxes": boxes,
                        "inputImageProperties": {"width": 200, "height": 100},
                    }
                },
                "submissionTime": f"2026-01-02T10:0{n}:00Z",
                "workerId": f"w{n}",
            }
            for n, boxes in enumerate(answers)
        ],
    }


def box(label: str, left: float, top: float, width: float, height: float) -> dict[str, Any]:
    return {"label": label, "left": left, "top": top, "width": width, "height": height}


def test_percent_boxes_become_the_pixel_boxes_a2i_gives() -> None:
    from_ls = convert_review(label_studio_review(task([rect("dog", 20, 10, 60, 40)])), CLASSES)
    from_a2i = convert_a2i_output(a2i_output([box("dog", 20, 10, 60, 40)]), CLASSES)
    assert from_ls.line is not None
    assert from_a2i.line is not None
    assert from_ls.line["a2i-retraining"] == from_a2i.line["a2i-retraining"]
    assert from_ls.line["a2i-retraining"]["annotations"] == [
        {"class_id": 1, "left": 20, "top": 10, "width": 60, "height": 40}
    ]
    assert from_ls.line["a2i-retraining-metadata"]["job-name"] == "label-studio/al-2026-01-01-abc"


def test_several_annotators_are_consolidated_by_majority_and_skips_are_not_answers() -> None:
    agreed = rect("cat", 10, 10, 50, 50)
    lonely = rect("dog", 150, 60, 30, 30)
    conversion = convert_review(
        label_studio_review(task([agreed, lonely], [rect("cat", 12, 10, 50, 50)], [], cancelled=2)), CLASSES
    )
    assert conversion.line is not None
    annotations = conversion.line["a2i-retraining"]["annotations"]
    assert [a["class_id"] for a in annotations] == [0]  # the dog box: 1 of 3 workers
    assert conversion.line["a2i-retraining-metadata"]["objects"] == [{"confidence": 0.6667}]


def test_unknown_labels_boxes_outside_and_rotated_boxes_are_reported() -> None:
    conversion = convert_review(
        label_studio_review(
            task(
                [
                    rect("bird", 10, 10, 20, 20),
                    rect("cat", 250, 10, 20, 20),
                    rect("cat", 5, 5, 9, 9, rotation=30),
                ]
            )
        ),
        CLASSES,
    )
    assert conversion.line is None
    reasons = [dropped.reason for dropped in conversion.dropped_boxes]
    assert any("rotated" in reason for reason in reasons)
    assert any("'bird' is not in the class list" in reason for reason in reasons)
    assert any("no area inside the 200x100 image" in reason for reason in reasons)


def test_a_size_other_than_the_predicted_one_names_the_task() -> None:
    with pytest.raises(ManifestConversionError, match="Label Studio task 'al-2026-01-01-abc', answer 0"):
        convert_review(
            label_studio_review(task([rect("cat", 10, 10, 20, 20)])), CLASSES, image_size=lambda _: (640, 480)
        )


def test_a_task_without_review_data_is_refused() -> None:
    with pytest.raises(ManifestConversionError, match="no review name"):
        label_studio_review({"id": 3, "data": {"image": "http://x"}})


def test_status_of_a_task() -> None:
    assert label_studio_status({"total_annotations": 1, "cancelled_annotations": 0}, 1) == ("Completed", None)
    assert label_studio_status({"total_annotations": 2, "cancelled_annotations": 1}, 2)[0] == "InProgress"
    assert label_studio_status({"meta": {"stopped": "timeout"}}, 1) == ("Stopped", "timeout")


def test_a_request_keeps_the_models_most_confident_boxes() -> None:
    record = {
        "source": SOURCE,
        "width": 200,
        "height": 100,
        "detections": [[1.0, 0.9, 0.1, 0.1, 0.5, 0.5], [0.0, 0.1, 0.0, 0.0, 0.2, 0.2]],
    }
    request = ReviewRequest.from_prediction("n", record, CLASSES, min_score=0.2, max_boxes=50)
    assert [b["label"] for b in request.boxes] == ["dog"]
    assert request.boxes[0]["left"] == pytest.approx(20)
