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


# --- answers that are what they claim, and bounded (issue 15.6, 15.9, 15.10) ---------------------


def convert(*annotations: list[Any], **kwargs: Any) -> Any:
    return convert_review(label_studio_review(task(*annotations)), CLASSES, **kwargs)


@pytest.mark.parametrize(
    ("result", "message"),
    [
        # a 10**400 coordinate raised a bare OverflowError
        (rect("cat", 10, 10, 20, 20, x=10**400), r"answer 0: result\[0\].value.x is not a finite number"),
        # a string rotation raised a bare ValueError
        (rect("cat", 10, 10, 20, 20, rotation="30"), r"answer 0: result\[0\].value.rotation is not a finite"),
        (rect("cat", 10, 10, 20, 20, y=None), r"answer 0: result\[0\].value.y is not a finite number: None"),
        ("not an object", r"answer 0: result\[0\] is not an object: 'not an object'"),
        ({**rect("cat", 1, 1, 2, 2), "value": []}, r"answer 0: result\[0\].value is not an object"),
    ],
)
def test_a_malformed_result_names_task_answer_and_field(result: Any, message: str) -> None:
    with pytest.raises(ManifestConversionError, match=rf"Label Studio task 'al-2026-01-01-abc', {message}"):
        convert([result])


@pytest.mark.parametrize("result", [{"x": 1}, "boxes", 3])
def test_a_result_that_is_not_a_list_names_task_and_answer(result: Any) -> None:
    """A dict or string ``result`` raised a bare AttributeError."""
    document = task([])
    document["annotations"][0]["result"] = result
    with pytest.raises(
        ManifestConversionError, match="Label Studio task 'al-2026-01-01-abc', answer 0: result is not a list"
    ):
        label_studio_review(document)


def test_polygons_and_boxes_with_two_labels_are_reported_as_dropped() -> None:
    """They vanished without a dropped_boxes entry."""
    polygon = {
        "type": "polygonlabels",
        "original_width": 200,
        "original_height": 100,
        "value": {"points": [[1, 1], [5, 5], [1, 5]], "polygonlabels": ["cat"]},
    }
    conversion = convert(
        [polygon, rect("cat", 10, 10, 20, 20, rectanglelabels=["cat", "dog"]), rect("dog", 50, 10, 20, 20)]
    )

    assert conversion.line is not None
    assert [(d.field, d.label, d.reason) for d in conversion.dropped_boxes] == [
        ("result[0]", "cat", "a 'polygonlabels' result, not a labelled box"),
        ("result[1]", "cat", "2 labels on one box: ['cat', 'dog']"),
    ]


def test_an_answer_with_more_boxes_than_the_bound_is_an_error_and_nothing_of_it_is_used() -> None:
    """One annotation with 10,000 boxes became a 10,000-box manifest line."""
    boxes = [rect("cat", n % 190, n % 90, 5, 5) for n in range(10_000)]
    with pytest.raises(
        ManifestConversionError,
        match=r"answer 0: result holds 10000 boxes, more than max_boxes_per_image=100; none of them is used",
    ):
        convert(boxes)
    assert convert(boxes[:30], max_boxes=30).line is not None


def test_a_long_label_is_cut_in_the_report() -> None:
    """A 10 MB label wrote a 20 MB report line and a 10 MB log line."""
    conversion = convert([rect("x" * 10_000_000, 10, 10, 20, 20), rect("cat", 50, 10, 20, 20)])

    (dropped,) = conversion.dropped_boxes
    report = dropped.to_dict()
    assert len(report["label"]) < 100
    assert len(report["reason"]) < 150
    assert report["reason"].startswith("label 'xxxx")


def test_consolidation_stays_near_linear_in_boxes() -> None:
    """3 workers x 3,000 boxes took 6 s (every box against every other); boxes are now compared
    within their class only, and bounded first. Counted in IoU computations, not timed."""
    from active_learning import manifest

    calls = 0
    real_iou = manifest.iou

    def counting_iou(*args: Any) -> float:
        nonlocal calls
        calls += 1
        return real_iou(*args)

    classes = tuple(f"class-{n}" for n in range(50))
    answer = [rect(classes[n % 50], (n * 7) % 190, (n * 3) % 90, 8, 8) for n in range(100)]
    document = task(answer, answer, answer)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(manifest, "iou", counting_iou)
        conversion = convert_review(label_studio_review(document), classes)
    assert conversion.line is not None
    # 100 boxes of 50 classes (2 each) in 3 answers: at most 100 x 2 x 2 comparisons, not 100 x 100 x 2
    assert calls <= 400


def test_an_answer_for_another_image_than_the_run_recorded_names_both() -> None:
    """A task whose data.source names another image of the day wrote a line for that other image."""
    other = SOURCE.replace("a.png", "b.png")
    with pytest.raises(
        ManifestConversionError,
        match=rf"Label Studio task 'al-2026-01-01-abc' answers for '{SOURCE}', but the run recorded "
        rf"'al-2026-01-01-abc' for {other}: its answers are not used",
    ):
        convert([rect("cat", 10, 10, 20, 20)], recorded=("al-2026-01-01-abc", other))
    line = convert([rect("cat", 10, 10, 20, 20)], recorded=("al-2026-01-01-abc", SOURCE)).line
    assert line is not None
    assert line["source-ref"] == SOURCE
