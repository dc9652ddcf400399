"""The emulator's synthetic scenes, local detector and mAP helper."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import time
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from world.evaluation import image_size, mean_average_precision
from world.model import PRIOR_MODEL_WEIGHT, LocalDetector, label_components, train
from world.scenes import DEMO_CLASSES, make_scenes

SIZE = 96
NUM_CLASSES = len(DEMO_CLASSES)

Scenes = list[tuple[bytes, list[dict]]]


@dataclass(frozen=True)
class Trained:
    """The held-out set and the two models the key property compares."""

    held_out: Scenes
    weak: LocalDetector
    strong: LocalDetector
    train_seconds: float


@pytest.fixture(scope="module")
def trained() -> Trained:
    held_out = make_scenes(999, 200, DEMO_CLASSES)
    weak = train(None, make_scenes(1, 4, DEMO_CLASSES), DEMO_CLASSES)
    more = make_scenes(2, 300, DEMO_CLASSES)
    started = time.perf_counter()
    strong = train(weak, more, DEMO_CLASSES)
    return Trained(held_out, weak, strong, time.perf_counter() - started)


def _pixels(box: dict) -> tuple[float, float, float, float]:
    return box["left"], box["top"], box["left"] + box["width"], box["top"] + box["height"]


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _jpeg(colour: tuple[int, int, int], size: tuple[int, int] = (SIZE, SIZE)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _map(model: LocalDetector, scenes: Scenes) -> tuple[float, float]:
    """mAP and the share of images whose top score is below 0.5 (what routing sends to review)."""
    responses = [model.predict(image) for image, _ in scenes]
    sizes = [image_size(image) for image, _ in scenes]
    value = mean_average_precision(responses, [boxes for _, boxes in scenes], NUM_CLASSES, sizes=sizes)
    tops = [max((row[1] for row in response["prediction"]), default=0.0) for response in responses]
    return value, float(np.mean(np.array(tops) < 0.5))


# --- scenes ---------------------------------------------------------------------------------------


def test_scenes_are_deterministic_per_seed() -> None:
    assert make_scenes(7, 5, DEMO_CLASSES) == make_scenes(7, 5, DEMO_CLASSES)
    assert make_scenes(7, 5, DEMO_CLASSES) != make_scenes(8, 5, DEMO_CLASSES)


def test_scene_boxes_lie_inside_the_image_and_apart() -> None:
    for image, boxes in make_scenes(3, 60, DEMO_CLASSES):
        with Image.open(io.BytesIO(image)) as decoded:
            assert (decoded.format, decoded.mode, decoded.size) == ("JPEG", "RGB", (SIZE, SIZE))
        assert 1 <= len(boxes) <= 3
        for box in boxes:
            assert DEMO_CLASSES[box["class_id"]] == box["label"]
            assert all(isinstance(box[key], int) for key in ("left", "top", "width", "height"))
            assert 0 <= box["left"] < box["left"] + box["width"] <= SIZE
            assert 0 <= box["top"] < box["top"] + box["height"] <= SIZE
            assert min(box["width"], box["height"]) >= 12
        for i, first in enumerate(boxes):
            for second in boxes[i + 1 :]:
                assert _iou(_pixels(first), _pixels(second)) == 0.0


# --- detector -------------------------------------------------------------------------------------


def test_predict_returns_the_built_in_response_format(trained: Trained) -> None:
    for image, _ in trained.held_out[:40]:
        rows = trained.strong.predict(image)["prediction"]
        assert rows, "every scene has at least one object"
        assert [row[1] for row in rows] == sorted((row[1] for row in rows), reverse=True)
        for class_id, score, xmin, ymin, xmax, ymax in rows:
            assert isinstance(class_id, float)
            assert class_id.is_integer()
            assert 0 <= class_id < NUM_CLASSES
            assert 0.0 <= score <= 1.0
            assert 0.0 <= xmin < xmax <= 1.0
            assert 0.0 <= ymin < ymax <= 1.0
    json.dumps(trained.strong.predict(trained.held_out[0][0]))  # the endpoint returns it as JSON


def test_trained_model_finds_most_objects(trained: Trained) -> None:
    found = total = 0
    for image, boxes in trained.held_out[:100]:
        detected = [
            tuple(value * SIZE for value in row[2:]) for row in trained.strong.predict(image)["prediction"]
        ]
        for box in boxes:
            total += 1
            found += any(_iou(_pixels(box), other) >= 0.5 for other in detected)
    assert found / total >= 0.9, f"{found}/{total} objects found"


def test_image_without_foreground_has_no_detection(trained: Trained) -> None:
    assert trained.strong.predict(_jpeg((128, 128, 128))) == {"prediction": []}
    assert trained.strong.predict(_jpeg((30, 30, 30), (640, 480))) == {"prediction": []}


def test_predict_rejects_bytes_that_are_not_an_image(trained: Trained) -> None:
    with pytest.raises(ValueError, match="not a readable image"):
        trained.strong.predict(b"not an image")


def test_a_label_seen_on_8_days_weighs_as_one_seen_once() -> None:
    """Each day trains from the day before on every label so far: the labels count once."""
    base = train(None, make_scenes(10, 4, DEMO_CLASSES), DEMO_CLASSES)
    labels = make_scenes(11, 6, DEMO_CLASSES)
    once = train(base, labels, DEMO_CLASSES)
    model = base
    for _ in range(8):
        model = train(model, labels, DEMO_CLASSES)
    assert model.n_seen == once.n_seen
    np.testing.assert_allclose(model.sums, once.sums)
    np.testing.assert_allclose(model.squares, once.squares)
    # the labels once, on top of the base model's own objects (few: under the cap)
    assert sum(once.n_seen) == sum(base.n_seen) + sum(len(boxes) for _, boxes in labels)


def test_the_base_model_counts_for_at_most_the_prior_weight_per_class() -> None:
    strong = train(None, make_scenes(12, 60, DEMO_CLASSES), DEMO_CLASSES)
    assert max(strong.n_seen) > PRIOR_MODEL_WEIGHT
    continued = train(strong, [], DEMO_CLASSES)
    assert max(continued.n_seen) == pytest.approx(PRIOR_MODEL_WEIGHT)
    # scaled, not forgotten: the class means stay where they were
    np.testing.assert_allclose(continued.means, strong.means, atol=1e-6 + 128 / PRIOR_MODEL_WEIGHT)
    assert continued.prior is not None
    restored = LocalDetector.from_artifact(continued.to_artifact())
    assert restored.prior is not None
    assert restored.n_seen == pytest.approx(continued.n_seen)
    np.testing.assert_allclose(restored.prior[1], continued.prior[1])


def test_training_rejects_bad_input() -> None:
    scenes = make_scenes(1, 1, DEMO_CLASSES)
    box = {"class_id": 0, "left": 0, "top": 0, "width": 5, "height": 5}
    with pytest.raises(ValueError, match="differ"):
        train(train(None, scenes, DEMO_CLASSES), scenes, ["cat", "dog"])
    with pytest.raises(ValueError, match="outside"):
        train(None, [(scenes[0][0], [{**box, "class_id": 9}])], DEMO_CLASSES)
    with pytest.raises(ValueError, match="sample 0"):
        train(None, [(b"junk", [box])], DEMO_CLASSES)
    with pytest.raises(ValueError, match="left/top/width/height"):
        train(None, [(scenes[0][0], [{"class_id": 0, "left": "x"}])], DEMO_CLASSES)
    with pytest.raises(ValueError, match="epochs"):
        train(None, scenes, DEMO_CLASSES, epochs=0)


def test_label_components_joins_diagonals_and_separates_gaps() -> None:
    mask = np.array(
        [
            [1, 0, 0, 1],
            [0, 1, 0, 1],
            [0, 0, 0, 0],
            [1, 1, 0, 1],
        ],
        dtype=bool,
    )
    labels, count = label_components(mask)
    assert count == 4
    assert labels[0, 0] == labels[1, 1] != 0
    assert labels[0, 3] == labels[1, 3] != labels[0, 0]
    assert len({labels[3, 0], labels[3, 3], labels[0, 0], labels[0, 3]}) == 4
    assert (labels == 0).sum() == (~mask).sum()


# --- artifact -------------------------------------------------------------------------------------


def test_artifact_round_trip(trained: Trained) -> None:
    data = trained.strong.to_artifact()
    assert data == trained.strong.to_artifact(), "the same model gives the same bytes"
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        assert archive.getnames() == ["model.json"]
    restored = LocalDetector.from_artifact(data)
    assert restored.classes == list(DEMO_CLASSES)
    assert restored.n_seen == trained.strong.n_seen
    image = trained.held_out[0][0]
    assert restored.predict(image) == trained.strong.predict(image)


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"definitely not gzip", "not a gzip tar archive"),
        (gzip.compress(b"plain text, not a tar"), "not a gzip tar archive"),
        (_tar_gz({"params": b"weights"}), "has no model.json"),
        (_tar_gz({"model.json": b"{not json"}), "is not JSON"),
        (_tar_gz({"model.json": b'{"format": "mxnet"}'}), "not a model of format"),
        (
            _tar_gz({"model.json": json.dumps({"format": "emulator-local-detector", "version": 1}).encode()}),
            "missing or malformed",
        ),
        (
            _tar_gz(
                {
                    "model.json": json.dumps(
                        {
                            "format": "emulator-local-detector",
                            "version": 1,
                            "classes": ["a", "b"],
                            "n_seen": [1],
                            "sums": [[1, 2, 3]],
                            "squares": [[1, 4, 9]],
                        }
                    ).encode()
                }
            ),
            "do not match 2 classes",
        ),
    ],
)
def test_broken_artifact_is_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LocalDetector.from_artifact(data)


# --- mAP ------------------------------------------------------------------------------------------

REFERENCES = [
    [{"class_id": 0, "left": 10, "top": 10, "width": 20, "height": 20}],
    [{"class_id": 1, "left": 50, "top": 40, "width": 30, "height": 20}],
]
SIZES = [(100, 100), (100, 50)]


def _row(class_id: int, score: float, box: dict, size: tuple[int, int]) -> list[float]:
    width, height = size
    left, top, right, bottom = _pixels(box)
    return [float(class_id), score, left / width, top / height, right / width, bottom / height]


def test_map_of_perfect_predictions_is_one() -> None:
    predictions = [
        {"prediction": [_row(box["class_id"], 0.9, box, size) for box in boxes]}
        for boxes, size in zip(REFERENCES, SIZES, strict=True)
    ]
    assert mean_average_precision(predictions, REFERENCES, 3, sizes=SIZES) == pytest.approx(1.0)


def test_map_of_all_wrong_classes_is_zero() -> None:
    predictions = [
        {"prediction": [_row(1 - box["class_id"], 0.9, box, size) for box in boxes]}
        for boxes, size in zip(REFERENCES, SIZES, strict=True)
    ]
    assert mean_average_precision(predictions, REFERENCES, 3, sizes=SIZES) == 0.0


def test_map_with_one_class_right_and_one_missed_is_half() -> None:
    predictions = [
        {"prediction": [_row(0, 0.8, REFERENCES[0][0], SIZES[0])]},
        # Right class, box shifted off the object (IoU < 0.5), plus SSD's background rows.
        {"prediction": [[1.0, 0.9, 0.0, 0.0, 0.2, 0.2], [-1.0, 0.99, 0.5, 0.8, 0.8, 1.0]]},
    ]
    assert mean_average_precision(predictions, REFERENCES, 3, sizes=SIZES) == pytest.approx(0.5)


def test_map_counts_a_duplicate_detection_as_false_positive() -> None:
    box, size = REFERENCES[0][0], SIZES[0]
    two_objects = [[box, {"class_id": 0, "left": 60, "top": 60, "width": 20, "height": 20}]]
    # Ranked: hit (P=1, R=.5), duplicate (false positive), hit (P=2/3, R=1) -> AP = .5 + .5 * 2/3.
    rows = [_row(0, 0.9, box, size), _row(0, 0.8, box, size), _row(0, 0.7, two_objects[0][1], size)]
    value = mean_average_precision([{"prediction": rows}], two_objects, 1, sizes=[size])
    assert value == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_image_size_reads_the_header() -> None:
    assert image_size(_jpeg((1, 2, 3), (64, 48))) == (64, 48)
    with pytest.raises(ValueError, match="not a readable image"):
        image_size(b"junk")


def test_map_rejects_mismatched_lengths_and_no_references() -> None:
    with pytest.raises(ValueError, match="one entry per image"):
        mean_average_precision([{"prediction": []}], REFERENCES, 3, sizes=SIZES)
    with pytest.raises(ValueError, match="no reference object"):
        mean_average_precision([{"prediction": []}], [[]], 3, sizes=[(10, 10)])


# --- the key property -----------------------------------------------------------------------------


def test_more_labelled_data_makes_a_clearly_better_and_surer_model(trained: Trained) -> None:
    weak_map, weak_low = _map(trained.weak, trained.held_out)
    strong_map, strong_low = _map(trained.strong, trained.held_out)
    print(
        f"\nheld-out mAP@0.5: weak (4 scenes) {weak_map:.3f}, strong (+300 scenes) {strong_map:.3f};"
        f" images with top score < 0.5: weak {weak_low:.0%}, strong {strong_low:.0%};"
        f" training on 300 scenes took {trained.train_seconds:.2f} s"
    )
    assert strong_map >= weak_map + 0.15
    assert strong_map >= 0.8
    assert weak_low >= 0.2, "the weak model should send a good share of images to review"
    assert strong_low < weak_low
