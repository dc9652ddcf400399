from __future__ import annotations

import copy
import io
import json
import re
from typing import Any

import pytest

from active_learning.classes import VOC_CLASSES
from active_learning.manifest import (
    ManifestConversionError,
    ManifestFormatError,
    a2i_output_to_manifest_line,
    convert_a2i_output,
    read_manifest,
    write_manifest,
)
from tests.support import load_fixture


def answer(boxes: list[dict[str, Any]], time: str = "2020-05-01T18:24:53.742Z", size=(400, 300)) -> dict:
    return {
        "answerContent": {
            "annotatedResult": {
                "boundingBoxes": boxes,
                "inputImageProperties": {"width": size[0], "height": size[1]},
            }
        },
        "submissionTime": time,
        "workerId": "w",
    }


def output(*answers: dict, loop: str = "loop-1") -> dict:
    return {
        "flowDefinitionArn": "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/fd",
        "humanLoopName": loop,
        "inputContent": {"taskObject": "s3://bucket/img.jpg", "labels": list(VOC_CLASSES)},
        "humanAnswers": list(answers),
    }


def box(label: str, left: float, top: float, width: float, height: float) -> dict:
    return {"label": label, "left": left, "top": top, "width": width, "height": height}


def test_the_seeds_output_converts_to_exactly_the_seeds_line() -> None:
    line = a2i_output_to_manifest_line(load_fixture("seed_a2i_output.json"), VOC_CLASSES)
    assert line == load_fixture("seed_manifest_line.json")
    annotation = line["a2i-retraining"]["annotations"][0]
    assert (annotation["class_id"], annotation["left"], annotation["top"]) == (1, 1042, 627)
    assert json.dumps(line["a2i-retraining-metadata"]["objects"]) == '[{"confidence": 1}]'


def test_custom_attribute_name() -> None:
    line = a2i_output_to_manifest_line(output(answer([box("cat", 1, 2, 3, 4)])), VOC_CLASSES, "labels")
    assert set(line) == {"source-ref", "labels", "labels-metadata"}


def test_input_content_as_a_json_string() -> None:
    document = output(answer([box("cat", 1, 2, 3, 4)]))
    document["inputContent"] = json.dumps(document["inputContent"])
    assert a2i_output_to_manifest_line(document, VOC_CLASSES)["source-ref"] == "s3://bucket/img.jpg"


def test_coordinates_are_rounded_and_clipped_and_empty_boxes_dropped() -> None:
    document = output(
        answer(
            [
                box("cat", -10.4, 20.6, 100.2, 50),  # clipped at the left
                box("dog", 390, 290, 50, 50),  # clipped at right and bottom
                box("car", 500, 10, 20, 20),  # outside: no area left
            ]
        )
    )
    line = a2i_output_to_manifest_line(document, VOC_CLASSES)
    assert line["a2i-retraining"]["annotations"] == [
        {"class_id": 7, "left": 0, "top": 21, "width": 90, "height": 50},
        {"class_id": 11, "left": 390, "top": 290, "width": 10, "height": 10},
    ]
    assert len(line["a2i-retraining-metadata"]["objects"]) == 2


@pytest.mark.parametrize(
    "document",
    [
        output(answer([])),
        output(answer([box("cat", 500, 500, 10, 10)])),
        output(),
    ],
)
def test_nothing_to_train_on_gives_none(document: dict) -> None:
    assert a2i_output_to_manifest_line(document, VOC_CLASSES) is None


def test_unknown_label_drops_only_that_box_and_names_the_label() -> None:
    conversion = convert_a2i_output(
        output(answer([box("unicorn", 1, 1, 5, 5), box("cat", 10, 10, 20, 20)]), loop="loop-7"), VOC_CLASSES
    )

    assert conversion.line["a2i-retraining"]["annotations"] == [
        {"class_id": 7, "left": 10, "top": 10, "width": 20, "height": 20}
    ]
    assert [dropped.to_dict() for dropped in conversion.dropped_boxes] == [
        {
            "answer": 0,
            "box": 0,
            "field": "boundingBoxes[0]",
            "label": "unicorn",
            "reason": "label 'unicorn' is not in the class list",
        }
    ]


def test_one_workers_unknown_label_does_not_void_the_others_agreement() -> None:
    document = output(
        answer([box("cat", 10, 10, 100, 100)]),
        answer([box("cat", 12, 10, 100, 100)]),
        answer([box("kitty", 11, 10, 100, 100), box("dog", 200, 100, 50, 50)]),
    )

    conversion = convert_a2i_output(document, VOC_CLASSES)

    # the cat is agreed by two of three workers; the third worker's "kitty" alone is dropped
    assert conversion.line["a2i-retraining"]["annotations"] == [
        {"class_id": 7, "left": 11, "top": 10, "width": 100, "height": 100}
    ]
    assert conversion.line["a2i-retraining-metadata"]["objects"] == [{"confidence": 0.6667}]
    assert [(d.answer, d.box, d.label) for d in conversion.dropped_boxes] == [(2, 0, "kitty")]


def test_boxes_clipped_to_nothing_are_reported_with_the_reason() -> None:
    document = output(
        answer(
            [
                box("cat", 10, 10, 50, 50),
                box("car", 500, 10, 20, 20),  # entirely right of the 400x300 image
                box("dog", -80, -80, 50, 50),  # entirely above and left
                box("bus", 20, 20, 0, 10),  # zero width
                box("cow", 20, 20, 10, -5),  # negative height
                box("cat", 30, 30, 0.2, 0.2),  # less than a pixel: nothing left when rounded
            ]
        )
    )

    conversion = convert_a2i_output(document, VOC_CLASSES)

    assert len(conversion.line["a2i-retraining"]["annotations"]) == 1
    assert [(d.box, d.label, d.reason) for d in conversion.dropped_boxes] == [
        (1, "car", "no area inside the 400x300 image"),
        (2, "dog", "no area inside the 400x300 image"),
        (3, "bus", "size 0x10 is not positive"),
        (4, "cow", "size 10x-5 is not positive"),
        (5, "cat", "no area inside the 400x300 image"),
    ]


def test_an_answer_with_only_dropped_boxes_gives_no_line_but_reports_them() -> None:
    conversion = convert_a2i_output(output(answer([box("car", 500, 10, 20, 20)])), VOC_CLASSES)

    assert conversion.line is None
    assert len(conversion.dropped_boxes) == 1
    assert conversion.source_ref == "s3://bucket/img.jpg"


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (float("inf"), "boundingBoxes[0].left"),
        (float("-inf"), "boundingBoxes[0].left"),
        (float("nan"), "boundingBoxes[0].left"),
        ("12", "boundingBoxes[0].left"),
        (None, "boundingBoxes[0].left"),
        (True, "boundingBoxes[0].left"),
        (10**400, "boundingBoxes[0].left"),
    ],
)
def test_a_non_finite_or_non_numeric_box_value_names_the_field(value: Any, field: str) -> None:
    document = output(answer([box("cat", value, 1, 5, 5)]))

    with pytest.raises(
        ManifestConversionError, match=rf"answer 0: {re.escape(field)} is not a finite number"
    ):
        convert_a2i_output(document, VOC_CLASSES)


@pytest.mark.parametrize("name", ["left", "top", "width", "height"])
def test_infinity_parsed_from_json_is_a_conversion_error(name: str) -> None:
    # Python's json reads Infinity and NaN: they used to raise OverflowError/ValueError from round().
    raw = json.dumps(output(answer([box("cat", 1, 1, 5, 5)]))).replace(
        f'"{name}": ', f'"{name}": Infinity, "x": ', 1
    )

    with pytest.raises(
        ManifestConversionError, match=rf"boundingBoxes\[0\]\.{name} is not a finite number: inf"
    ):
        convert_a2i_output(json.loads(raw), VOC_CLASSES)


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ((float("inf"), 300), "inputImageProperties.width is not a finite number"),
        ((400, float("nan")), "inputImageProperties.height is not a finite number"),
        (("400", 300), "inputImageProperties.width is not a finite number"),
        ((400.5, 300), "not in whole pixels"),
    ],
)
def test_a_bad_image_size_names_the_field(size: tuple[Any, Any], message: str) -> None:
    with pytest.raises(ManifestConversionError, match=message):
        convert_a2i_output(output(answer([box("cat", 1, 1, 5, 5)], size=size)), VOC_CLASSES)


def test_the_size_the_reviewers_saw_must_be_the_predicted_size() -> None:
    document = output(answer([box("cat", 1, 1, 5, 5)], size=(400, 300)), loop="loop-3")
    sizes = {"s3://bucket/img.jpg": (640, 480)}

    with pytest.raises(ManifestConversionError) as raised:
        convert_a2i_output(document, VOC_CLASSES, image_size=sizes.get)

    assert str(raised.value) == (
        "human loop 'loop-3', answer 0: the reviewer saw a 400x300 image, but s3://bucket/img.jpg is "
        "640x480; the loop's boxes are not used"
    )
    assert convert_a2i_output(document, VOC_CLASSES, image_size={"s3://bucket/img.jpg": (400, 300)}.get).line
    with pytest.raises(ManifestConversionError, match="not among the day's predicted images"):
        convert_a2i_output(document, VOC_CLASSES, image_size={}.get)


def test_workers_who_saw_different_sizes_are_an_error() -> None:
    document = output(answer([box("cat", 1, 1, 5, 5)]), answer([box("cat", 1, 1, 5, 5)], size=(800, 600)))

    with pytest.raises(ManifestConversionError, match="answer 1: the reviewer saw a 800x600 image"):
        convert_a2i_output(document, VOC_CLASSES)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("humanLoopName"), "humanLoopName"),
        (lambda d: d["inputContent"].pop("taskObject"), "taskObject"),
        (lambda d: d["humanAnswers"][0]["answerContent"].pop("annotatedResult"), "not a bounding-box answer"),
        (lambda d: d["humanAnswers"][0].update(submissionTime="yesterday"), "not a bounding-box answer"),
        (
            lambda d: d["humanAnswers"][0]["answerContent"]["annotatedResult"]["boundingBoxes"][0].pop("top"),
            "malformed box",
        ),
        (
            lambda d: d["humanAnswers"][0]["answerContent"]["annotatedResult"].update(
                inputImageProperties={"width": 0, "height": 5}
            ),
            "not positive",
        ),
    ],
)
def test_malformed_outputs_raise_with_the_reason(mutate, message: str) -> None:
    document = copy.deepcopy(output(answer([box("cat", 1, 1, 5, 5)])))
    mutate(document)
    with pytest.raises(ManifestConversionError, match=message):
        a2i_output_to_manifest_line(document, VOC_CLASSES)


def test_three_workers_are_consolidated_by_majority() -> None:
    document = output(
        answer([box("cat", 10, 10, 100, 100), box("dog", 200, 100, 50, 50)], "2020-05-01T10:00:00.000Z"),
        answer([box("cat", 14, 12, 100, 100)], "2020-05-01T12:00:00.000Z"),
        answer([box("cat", 12, 11, 100, 100), box("car", 300, 200, 40, 40)], "2020-05-01T11:00:00.000Z"),
    )
    line = a2i_output_to_manifest_line(document, VOC_CLASSES)
    # the cat agreed by all three at the mean box; the dog and the car by one worker only: dropped
    assert line["a2i-retraining"]["annotations"] == [
        {"class_id": 7, "left": 12, "top": 11, "width": 100, "height": 100}
    ]
    assert line["a2i-retraining-metadata"]["objects"] == [{"confidence": 1}]
    assert line["a2i-retraining-metadata"]["creation-date"] == "2020-05-01T12:00:00.000Z"


def test_two_of_three_is_a_majority_with_its_share_as_confidence() -> None:
    document = output(
        answer([box("cat", 10, 10, 100, 100)]),
        answer([box("cat", 10, 10, 100, 100)]),
        answer([box("dog", 10, 10, 100, 100)]),  # same place, other label: does not agree
    )
    line = a2i_output_to_manifest_line(document, VOC_CLASSES)
    assert line["a2i-retraining"]["annotations"] == [
        {"class_id": 7, "left": 10, "top": 10, "width": 100, "height": 100}
    ]
    assert line["a2i-retraining-metadata"]["objects"] == [{"confidence": 0.6667}]


def test_two_workers_need_both_and_low_overlap_does_not_agree() -> None:
    document = output(
        answer([box("cat", 0, 0, 100, 100)]),
        answer([box("cat", 60, 0, 100, 100)]),  # IoU 40/160 = 0.25 < 0.5
    )
    assert a2i_output_to_manifest_line(document, VOC_CLASSES) is None


def test_each_workers_box_is_used_once() -> None:
    document = output(
        answer([box("cat", 0, 0, 100, 100), box("cat", 2, 2, 100, 100)]),
        answer([box("cat", 1, 1, 100, 100)]),
    )
    line = a2i_output_to_manifest_line(document, VOC_CLASSES)
    assert len(line["a2i-retraining"]["annotations"]) == 1


def test_manifest_round_trip_streams_lines() -> None:
    lines = [{"source-ref": f"s3://b/{i}.jpg"} for i in range(3)]
    stream = io.StringIO()
    assert write_manifest(iter(lines), stream) == 3
    assert stream.getvalue().count("\n") == 3
    stream.seek(0)
    assert list(read_manifest(io.StringIO(stream.getvalue() + "\n"))) == lines


def test_read_manifest_names_the_bad_line() -> None:
    with pytest.raises(ManifestFormatError, match="line 2"):
        list(read_manifest(io.StringIO('{"a": 1}\n{oops\n')))
    with pytest.raises(ManifestFormatError, match="line 1: expected a JSON object"):
        list(read_manifest(io.StringIO("[1]\n")))


def test_an_output_that_is_not_an_object_is_a_conversion_error() -> None:
    with pytest.raises(ManifestConversionError, match="JSON object"):
        a2i_output_to_manifest_line([1, 2], VOC_CLASSES)  # type: ignore[arg-type]
