"""BatchPredictOperator on moto S3 with a scripted endpoint standing in for the built-in algorithm."""

from __future__ import annotations

import io
import json
import struct
import threading
import time
import warnings
import zlib
from typing import Any
from unittest.mock import MagicMock

import boto3
import pytest
from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger
from airflow.providers.common.compat.sdk import AirflowException, TaskDeferred
from botocore.exceptions import ClientError
from botocore.response import StreamingBody
from botocore.stub import Stubber
from PIL import Image

from active_learning import images as images_module
from active_learning.hooks.models import ModelLineageHook
from active_learning.hooks.sagemaker_runtime import SageMakerRuntimeHook
from active_learning.images import (
    MAX_IMAGE_PIXELS,
    MAX_PAYLOAD_BYTES,
    Quarantined,
    image_properties,
    read_bounded,
)
from active_learning.naming import transform_job_name
from active_learning.operators.predict import BatchPredictOperator, PredictShardOperator
from active_learning.prediction import day as day_module
from active_learning.prediction import transform as transform_module
from active_learning.prediction.transform import DayTransformJob, transform_output_prefix
from active_learning.settings import SettingsError
from tests.unit.operators.conftest import (
    BUCKET,
    DAY,
    INCOMING,
    PREFIX,
    REGION,
    RUNS,
    SETTINGS,
    FakeEndpoint,
    client_error,
    exists,
    image_bytes,
    operator_kwargs,
    put,
    read_lines,
    read_text,
    source,
)

PREDICTIONS = f"{RUNS}predictions.jsonl"
QUARANTINE = f"{RUNS}quarantine.jsonl"
PREDICTION_FIELDS = {"source", "width", "height", "format", "detections", "top_score", "review", "reason"}


def make_operator(concurrency: int = 4, **settings: Any) -> BatchPredictOperator:
    return BatchPredictOperator(task_id="predict", concurrency=concurrency, **operator_kwargs(**settings))


def noisy_jpeg(width: int = 320, height: int = 240) -> bytes:
    """A JPEG with real entropy, so cutting it leaves the header intact and the scan data short."""
    buffer = io.BytesIO()
    Image.effect_noise((width, height), 64).convert("RGB").save(buffer, "JPEG")
    return buffer.getvalue()


def claiming_size(image_format: str, width: int, height: int) -> bytes:
    """A small real image whose header claims ``width`` x ``height`` (what a decompression bomb looks like
    to a header reader; a real 12000x12000 image would cost seconds and hundreds of MB to make)."""
    data = bytearray(image_bytes(image_format, 8, 8))
    if image_format == "PNG":  # IHDR: width and height at bytes 16-24, its CRC over bytes 12-29
        data[16:24] = struct.pack(">II", width, height)
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    else:  # baseline JPEG: SOF0 marker, length, precision, then height and width
        sof = data.index(b"\xff\xc0")
        data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def by_source(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {line["source"]: line for line in lines}


def put_image(s3: Any, name: str, image_format: str, width: int, height: int) -> None:
    put(s3, INCOMING + name, image_bytes(image_format, width, height))


# image_properties ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (image_bytes("JPEG", 640, 480), ("JPEG", 640, 480)),
        (image_bytes("PNG", 33, 17), ("PNG", 33, 17)),
        (noisy_jpeg(), ("JPEG", 320, 240)),
    ],
    ids=["jpeg", "png", "noisy-jpeg"],
)
def test_image_properties_reads_the_header(data: bytes, expected: tuple[str, int, int]) -> None:
    assert image_properties(data) == expected


def test_image_properties_accepts_a_multi_picture_jpeg_as_jpeg() -> None:
    # Phones and cameras write MPO: a JPEG with more pictures appended, which any JPEG decoder reads.
    picture = Image.new("RGB", (64, 48), "red")
    buffer = io.BytesIO()
    picture.save(buffer, "MPO", save_all=True, append_images=[picture])

    assert image_properties(buffer.getvalue()) == ("JPEG", 64, 48)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (noisy_jpeg()[:6000], "not a decodable image"),
        (image_bytes("PNG", 320, 240)[:300], "not a decodable image"),
        (b"\x00\x01garbage" * 20, "not a decodable image"),
        (b"date,label\n2026-11-26,cat\n", "not a decodable image"),
        (image_bytes("GIF", 64, 48), "unsupported image format GIF"),
        (image_bytes("BMP", 64, 48), "unsupported image format BMP"),
    ],
    ids=["truncated-jpeg", "truncated-png", "garbage", "text", "gif", "bmp"],
)
def test_image_properties_quarantines_unusable_inputs(data: bytes, reason: str) -> None:
    with pytest.raises(Quarantined, match=reason):
        image_properties(data)


def test_pillows_bomb_limit_is_not_the_mechanism(monkeypatch: pytest.MonkeyPatch) -> None:
    # MAX_IMAGE_PIXELS decides, from the header; Pillow's own limit never warns or refuses first.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64x48 is over twice Pillow's limit

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert image_properties(image_bytes("PNG", 64, 48)) == ("PNG", 64, 48)
        assert image_properties(image_bytes("JPEG", 64, 48)) == ("JPEG", 64, 48)


@pytest.mark.parametrize(
    ("image_format", "width", "height"),
    [("PNG", 12000, 12000), ("JPEG", 13000, 13000), ("PNG", 8000, 6000), ("JPEG", 6325, 6325)],
)
def test_image_properties_quarantines_an_image_over_the_pixel_limit_from_its_header(
    image_format: str, width: int, height: int
) -> None:
    # Just under Pillow's bomb error (179 MP), between the limit and Pillow's warning (89 MP), and
    # one pixel row over the limit: quarantined by our limit, naming the size, with no Pillow warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(Quarantined, match=rf"image is {width}x{height} pixels .* at most 40 MP"):
            image_properties(claiming_size(image_format, width, height))


def test_the_pixel_limit_is_inclusive(monkeypatch: pytest.MonkeyPatch) -> None:
    assert MAX_IMAGE_PIXELS == 40_000_000
    monkeypatch.setattr(images_module, "MAX_IMAGE_PIXELS", 64 * 48)

    assert image_properties(image_bytes("PNG", 64, 48)) == ("PNG", 64, 48)
    with pytest.raises(Quarantined, match="65x48 pixels"):
        image_properties(image_bytes("JPEG", 65, 48))


def test_read_bounded_reads_at_most_one_byte_over_the_limit() -> None:
    raw = io.BytesIO(b"x" * 5000)
    body = StreamingBody(raw, 5000)

    assert read_bounded(body, 1000) is None
    assert body._amount_read == 1001
    assert raw.closed
    assert read_bounded(StreamingBody(io.BytesIO(b"x" * 1000), 1000), 1000) == b"x" * 1000


# the operator -------------------------------------------------------------------------------------


def test_template_fields_and_no_io_at_construction() -> None:
    # Built outside moto: constructing must not touch AWS.
    op = make_operator()

    assert {"settings", "day", "aws_conn_id", "region_name"} <= set(op.template_fields)
    assert op.botocore_config["retries"] == {"mode": "adaptive", "max_attempts": 10}


def test_predicts_usable_images_and_quarantines_the_rest(
    s3: Any, endpoint: FakeEndpoint, context: dict[str, Any]
) -> None:
    endpoint.script = {
        (640, 480): [[11.0, 0.3, 0.5, 0.5, 0.9, 0.9], [7.0, 0.45, 0.1, 0.25, 0.55, 0.75]],
        (320, 240): [[11.0, 0.97, 0.0, 0.0, 1.0, 1.0]],
        (200, 100): [],
        (300, 200): [[14.0, 0.5, 0.2, 0.2, 0.4, 0.4]],
        (111, 111): client_error(
            "ModelError", "Received client error (400): cannot decode", "InvokeEndpoint"
        ),
        (113, 113): b"<html><body>502 Bad Gateway</body></html>",
        (77, 77): AssertionError("an image of another day was predicted"),
    }
    put_image(s3, "cat.jpg", "JPEG", 640, 480)
    put_image(s3, "dog.png", "PNG", 320, 240)
    put_image(s3, "empty.jpg", "JPEG", 200, 100)
    put_image(s3, "exactly-threshold.png", "PNG", 300, 200)
    put_image(s3, "camera-1/nested.jpg", "JPEG", 128, 96)
    put(s3, INCOMING + "truncated.jpg", noisy_jpeg()[:6000])
    put(s3, INCOMING + "garbage.jpg", b"\x00\x01garbage" * 20)
    put_image(s3, "animation.gif", "GIF", 64, 48)
    put(s3, INCOMING + "notes.txt", "these are not pictures\n")
    put_image(s3, "rejected.jpg", "JPEG", 111, 111)
    put_image(s3, "malformed.png", "PNG", 113, 113)
    put(s3, INCOMING, b"")  # the folder marker a console upload leaves
    put(s3, f"{PREFIX}/incoming/2026-11-25/old.jpg", image_bytes("JPEG", 77, 77))

    result = make_operator().execute(context)

    assert result == {
        "images": 11,
        "predicted": 5,
        "quarantined": 6,
        "to_review": 2,
        "reasons": {"low-confidence": 1, "confident": 3, "no-detections": 1},
        "predictions_uri": f"s3://my-bucket/{PREDICTIONS}",
        "quarantine_uri": f"s3://my-bucket/{QUARANTINE}",
    }
    assert len(json.dumps(result)) < 1000  # XCom: counts and URIs, no per-image lists

    predictions = by_source(read_lines(s3, PREDICTIONS))
    assert len(read_lines(s3, PREDICTIONS)) == 5
    assert set(predictions) == {
        source(name)
        for name in ("cat.jpg", "dog.png", "empty.jpg", "exactly-threshold.png", "camera-1/nested.jpg")
    }
    assert all(set(line) == PREDICTION_FIELDS for line in predictions.values())
    assert predictions[source("cat.jpg")] == {
        "source": source("cat.jpg"),
        "width": 640,
        "height": 480,
        "format": "JPEG",
        "detections": [[7.0, 0.45, 0.1, 0.25, 0.55, 0.75], [11.0, 0.3, 0.5, 0.5, 0.9, 0.9]],
        "top_score": 0.45,
        "review": True,
        "reason": "low-confidence",
    }
    assert predictions[source("dog.png")] == {
        "source": source("dog.png"),
        "width": 320,
        "height": 240,
        "format": "PNG",
        "detections": [[11.0, 0.97, 0.0, 0.0, 1.0, 1.0]],
        "top_score": 0.97,
        "review": False,
        "reason": "confident",
    }
    empty = predictions[source("empty.jpg")]
    assert (empty["detections"], empty["top_score"], empty["review"], empty["reason"]) == (
        [],
        None,
        True,
        "no-detections",
    )
    assert predictions[source("exactly-threshold.png")]["reason"] == "confident"
    assert predictions[source("camera-1/nested.jpg")]["review"] is False

    quarantine = {line["source"]: line["reason"] for line in read_lines(s3, QUARANTINE)}
    assert len(read_lines(s3, QUARANTINE)) == 6
    assert set(quarantine) == {
        source(name)
        for name in (
            "truncated.jpg",
            "garbage.jpg",
            "animation.gif",
            "notes.txt",
            "rejected.jpg",
            "malformed.png",
        )
    }
    assert quarantine[source("truncated.jpg")].startswith("not a decodable image")
    assert quarantine[source("garbage.jpg")].startswith("not a decodable image")
    assert quarantine[source("notes.txt")].startswith("not a decodable image")
    assert quarantine[source("animation.gif")].startswith("unsupported image format GIF")
    assert (
        quarantine[source("rejected.jpg")]
        == "the model rejected the image: Received client error (400): cannot decode"
    )
    assert quarantine[source("malformed.png")].startswith("unreadable prediction: response is not JSON")

    # Only decodable JPEG/PNG images of the day reach the endpoint, each exactly once.
    assert sorted(endpoint.calls) == sorted(
        [(640, 480), (320, 240), (200, 100), (300, 200), (128, 96), (111, 111), (113, 113)]
    )


def test_seed_rule_top_score_below_threshold_goes_to_review(
    s3: Any, endpoint: FakeEndpoint, context: dict[str, Any]
) -> None:
    scores = {"a.jpg": 0.0, "b.jpg": 0.2, "c.jpg": 0.4999, "d.jpg": 0.5, "e.jpg": 0.75}
    for width, (name, score) in enumerate(scores.items(), start=40):
        endpoint.script[(width, 30)] = [
            [3.0, score, 0.1, 0.1, 0.2, 0.2],
            [4.0, score / 2, 0.3, 0.3, 0.4, 0.4],
        ]
        put_image(s3, name, "JPEG", width, 30)
    put_image(s3, "nothing.png", "PNG", 90, 30)
    endpoint.script[(90, 30)] = []

    result = make_operator().execute(context)

    decisions = {line["source"]: (line["review"], line["reason"]) for line in read_lines(s3, PREDICTIONS)}
    assert decisions == {
        source("a.jpg"): (True, "low-confidence"),
        source("b.jpg"): (True, "low-confidence"),
        source("c.jpg"): (True, "low-confidence"),
        source("d.jpg"): (False, "confident"),
        source("e.jpg"): (False, "confident"),
        source("nothing.png"): (True, "no-detections"),
    }
    assert result["to_review"] == 4
    assert result["reasons"] == {"low-confidence": 3, "confident": 2, "no-detections": 1}


def test_threshold_and_audit_sample_come_from_the_settings(
    s3: Any, endpoint: FakeEndpoint, context: dict[str, Any]
) -> None:
    endpoint.script[(40, 30)] = [[3.0, 0.75, 0.1, 0.1, 0.2, 0.2]]
    endpoint.script[(41, 30)] = [[3.0, 0.95, 0.1, 0.1, 0.2, 0.2]]
    put_image(s3, "a.jpg", "JPEG", 40, 30)
    put_image(s3, "b.jpg", "JPEG", 41, 30)

    # As the DAG renders them: a JSON string with string values.
    settings = json.dumps({**operator_kwargs()["settings"], "threshold": "0.8", "audit_fraction": "1"})
    op = BatchPredictOperator(task_id="predict", **{**operator_kwargs(), "settings": settings})
    result = op.execute(context)

    decisions = {line["source"]: (line["review"], line["reason"]) for line in read_lines(s3, PREDICTIONS)}
    assert decisions == {
        source("a.jpg"): (True, "low-confidence"),
        source("b.jpg"): (True, "audit-sample"),
    }
    assert result["reasons"] == {"low-confidence": 1, "audit-sample": 1}


def test_review_budget_keeps_the_most_uncertain(
    s3: Any, endpoint: FakeEndpoint, context: dict[str, Any]
) -> None:
    scores = {"s10.jpg": 0.1, "s30.jpg": 0.3, "s45.png": 0.45, "s90.jpg": 0.9}
    for width, (name, score) in enumerate(scores.items(), start=40):
        endpoint.script[(width, 30)] = [[3.0, score, 0.1, 0.1, 0.2, 0.2]]
        put_image(s3, name, "PNG" if name.endswith(".png") else "JPEG", width, 30)
    endpoint.script[(90, 30)] = []
    put_image(s3, "none.jpg", "JPEG", 90, 30)

    result = make_operator(max_reviews=2).execute(context)

    decisions = {line["source"]: (line["review"], line["reason"]) for line in read_lines(s3, PREDICTIONS)}
    assert decisions == {
        source("none.jpg"): (True, "no-detections"),
        source("s10.jpg"): (True, "low-confidence"),
        source("s30.jpg"): (False, "over-review-budget"),
        source("s45.png"): (False, "over-review-budget"),
        source("s90.jpg"): (False, "confident"),
    }
    assert result["to_review"] == 2
    assert result["reasons"] == {
        "no-detections": 1,
        "low-confidence": 1,
        "over-review-budget": 2,
        "confident": 1,
    }


def test_a_rerun_overwrites_the_day_outputs(s3: Any, endpoint: FakeEndpoint, context: dict[str, Any]) -> None:
    put_image(s3, "a.jpg", "JPEG", 40, 30)
    put_image(s3, "b.png", "PNG", 41, 30)
    put(s3, INCOMING + "broken.jpg", b"broken")

    first = make_operator().execute(context)
    first_predictions, first_quarantine = read_text(s3, PREDICTIONS), read_text(s3, QUARANTINE)
    second = make_operator().execute(context)

    assert second == first
    assert len(read_lines(s3, PREDICTIONS)) == 2
    assert len(read_lines(s3, QUARANTINE)) == 1
    assert sorted(read_text(s3, PREDICTIONS).splitlines()) == sorted(first_predictions.splitlines())
    assert read_text(s3, QUARANTINE) == first_quarantine


def test_an_empty_day_writes_empty_files(s3: Any, endpoint: FakeEndpoint, context: dict[str, Any]) -> None:
    put(s3, INCOMING, b"")  # folder marker only
    put(s3, f"{PREFIX}/incoming/2026-11-25/old.jpg", image_bytes("JPEG", 40, 30))
    put(s3, f"{PREFIX}/incoming/2026-11-27/new.jpg", image_bytes("JPEG", 40, 30))

    result = make_operator().execute(context)

    assert result["images"] == result["predicted"] == result["quarantined"] == result["to_review"] == 0
    assert result["reasons"] == {}
    assert read_text(s3, PREDICTIONS) == ""
    assert read_text(s3, QUARANTINE) == ""
    assert endpoint.calls == []


def test_an_image_over_the_invoke_payload_limit_is_quarantined_not_sent(
    s3: Any, endpoint: FakeEndpoint, context: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    image = image_bytes("PNG", 40, 30)
    monkeypatch.setattr(images_module, "MAX_PAYLOAD_BYTES", len(image) - 1)
    put(s3, f"{INCOMING}big.png", image)

    result = make_operator().execute(context)

    assert result["quarantined"] == 1
    assert "at most 6 MB" in read_text(s3, QUARANTINE)
    assert endpoint.calls == []


def test_an_object_over_the_payload_limit_is_quarantined_from_the_listing_without_a_download(
    s3: Any, endpoint: FakeEndpoint, context: dict[str, Any]
) -> None:
    put(s3, f"{INCOMING}huge.bin", b"\0" * (MAX_PAYLOAD_BYTES + 1))
    put_image(s3, "small.jpg", "JPEG", 40, 30)
    op = make_operator()
    downloaded: list[str] = []
    op.s3.get_conn().meta.events.register(
        "provide-client-params.s3.GetObject", lambda params, **_: downloaded.append(params["Key"])
    )

    result = op.execute(context)

    assert (result["quarantined"], result["predicted"]) == (1, 1)
    assert read_lines(s3, QUARANTINE) == [
        {
            "source": source("huge.bin"),
            "reason": "object is 6291457 bytes; InvokeEndpoint accepts at most 6 MB (6291456 bytes)",
        }
    ]
    assert downloaded == [f"{INCOMING}small.jpg"]
    assert endpoint.calls == [(40, 30)]


def test_an_object_larger_than_listed_is_read_only_up_to_the_limit(
    s3: Any, endpoint: FakeEndpoint, context: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Replaced by a larger object between the listing and the download.
    image = image_bytes("PNG", 40, 30)
    put(s3, f"{INCOMING}grown.png", image)
    monkeypatch.setattr(images_module, "MAX_PAYLOAD_BYTES", len(image) - 1)
    monkeypatch.setattr(day_module, "iter_objects", lambda *_: iter([(f"{INCOMING}grown.png", 10)]))
    op = make_operator()
    bodies: list[Any] = []
    op.s3.get_conn().meta.events.register(
        "after-call.s3.GetObject", lambda parsed, **_: bodies.append(parsed["Body"])
    )

    result = op.execute(context)

    assert result["quarantined"] == 1
    assert read_lines(s3, QUARANTINE)[0]["reason"] == (
        f"object is over {len(image) - 1} bytes; InvokeEndpoint accepts at most 6 MB ({len(image) - 1} bytes)"
    )
    assert [body._amount_read for body in bodies] == [len(image)]  # the limit + 1, no more
    assert endpoint.calls == []


def test_an_image_over_the_pixel_limit_is_quarantined_not_sent(
    s3: Any, endpoint: FakeEndpoint, context: dict[str, Any]
) -> None:
    put(s3, f"{INCOMING}bomb.png", claiming_size("PNG", 12000, 12000))
    put(s3, f"{INCOMING}bomb.jpg", claiming_size("JPEG", 13000, 13000))
    put_image(s3, "fine.jpg", "JPEG", 40, 30)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = make_operator().execute(context)

    assert (result["quarantined"], result["predicted"]) == (2, 1)
    quarantine = {line["source"]: line["reason"] for line in read_lines(s3, QUARANTINE)}
    assert quarantine == {
        source("bomb.png"): "image is 12000x12000 pixels (144.0 MP); at most 40 MP are sent to the endpoint",
        source("bomb.jpg"): "image is 13000x13000 pixels (169.0 MP); at most 40 MP are sent to the endpoint",
    }
    assert endpoint.calls == [(40, 30)]


def test_an_endpoint_error_other_than_model_error_fails_the_task(
    s3: Any, endpoint: FakeEndpoint, context: dict[str, Any]
) -> None:
    put(s3, PREDICTIONS, '{"source": "from the previous run"}\n')
    for width in range(40, 46):
        put_image(s3, f"{width}.jpg", "JPEG", width, 30)
    endpoint.script[(43, 30)] = client_error(
        "ValidationException",
        "Endpoint object-detection of account 123456789012 not found.",
        "InvokeEndpoint",
    )

    with pytest.raises(ClientError, match="not found") as raised:
        make_operator().execute(context)

    assert raised.value.response["Error"]["Code"] == "ValidationException"
    # Nothing half-written: the previous run's file is intact and no quarantine file appeared.
    assert read_text(s3, PREDICTIONS) == '{"source": "from the previous run"}\n'
    assert not exists(s3, QUARANTINE)


def test_invalid_settings_fail_before_any_call(
    s3: Any, endpoint: FakeEndpoint, context: dict[str, Any]
) -> None:
    put_image(s3, "a.jpg", "JPEG", 40, 30)

    with pytest.raises(SettingsError, match="threshold"):
        make_operator(threshold=1.5).execute(context)
    assert endpoint.calls == []


def test_images_are_pulled_lazily_with_bounded_concurrency(
    s3: Any, monkeypatch: pytest.MonkeyPatch, context: dict[str, Any]
) -> None:
    concurrency, count = 4, 150
    png = image_bytes("PNG", 8, 8)
    for index in range(count):
        put(s3, f"{INCOMING}{index:03d}.png", png)

    lock = threading.Lock()
    state = {"pulled": 0, "returned": 0, "in_flight": 0, "peak": 0, "lag": 0}
    real_iter_objects = day_module.iter_objects

    def counting_iter_objects(*args: Any, **kwargs: Any):
        for listed in real_iter_objects(*args, **kwargs):
            with lock:
                state["pulled"] += 1
            yield listed

    def endpoint(endpoint_name: str, body: bytes, content_type: str) -> bytes:
        with lock:
            state["in_flight"] += 1
            state["peak"] = max(state["peak"], state["in_flight"])
            # Keys taken from the listing but not yet answered: bounded by the calls in flight.
            state["lag"] = max(state["lag"], state["pulled"] - state["returned"])
        time.sleep(0.001)
        with lock:
            state["in_flight"] -= 1
            state["returned"] += 1
        return json.dumps({"prediction": [[1.0, 0.8, 0.1, 0.1, 0.9, 0.9]]}).encode()

    monkeypatch.setattr(day_module, "iter_objects", counting_iter_objects)
    monkeypatch.setattr(SageMakerRuntimeHook, "invoke_endpoint", staticmethod(endpoint))

    result = make_operator(concurrency=concurrency).execute(context)

    assert result["images"] == result["predicted"] == count
    assert len(read_lines(s3, PREDICTIONS)) == count
    assert state["pulled"] == state["returned"] == count
    assert state["peak"] <= concurrency
    assert state["lag"] <= concurrency


def test_class_balance_counts_the_labels_of_the_days_before_not_the_days_own(
    s3: Any, endpoint: FakeEndpoint, context: dict[str, Any]
) -> None:
    def manifest_line(name: str, class_id: int) -> str:
        annotations = [{"class_id": class_id, "left": 1, "top": 1, "width": 5, "height": 5}]
        return json.dumps({"source-ref": source(name), "a2i-retraining": {"annotations": annotations}})

    # class 0 has 3 labels before the day; the day's own manifest (a rerun) must not count
    earlier = "\n".join(manifest_line(f"old-{index}.jpg", 0) for index in range(3))
    put(s3, f"{PREFIX}/runs/2026-11-25/augmented.manifest", earlier.encode())
    own = "\n".join(manifest_line(f"new-{index}.jpg", 1) for index in range(9))
    put(s3, f"{RUNS}augmented.manifest", own.encode())
    endpoint.script[(40, 30)] = [[0.0, 0.2, 0.1, 0.1, 0.2, 0.2]]  # least-confidence would keep this one
    endpoint.script[(41, 30)] = [[1.0, 0.4, 0.1, 0.1, 0.2, 0.2]]
    put_image(s3, "class-0.jpg", "JPEG", 40, 30)
    put_image(s3, "class-1.jpg", "JPEG", 41, 30)

    make_operator(max_reviews=1, selection_strategy="class-balance").execute(context)
    balanced = {line["source"]: line["review"] for line in read_lines(s3, PREDICTIONS)}
    make_operator(max_reviews=1, selection_strategy="least-confidence").execute(context)
    seed_rule = {line["source"]: line["review"] for line in read_lines(s3, PREDICTIONS)}

    assert balanced == {source("class-0.jpg"): False, source("class-1.jpg"): True}
    assert seed_rule == {source("class-0.jpg"): True, source("class-1.jpg"): False}
    assert all(set(line) == PREDICTION_FIELDS for line in read_lines(s3, PREDICTIONS))  # no rank written


# batch_transform mode (moto: the endpoint and a transform job that finishes at once) ----------------


def _serve_on_moto(model: str = "served") -> str:
    """The endpoint serving a model (``<model>-model``), on moto; returns the model name. moto has no
    UpdateEndpoint: another model is served by creating the endpoint again."""
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    sagemaker.create_model(
        ModelName=f"{model}-model",
        ExecutionRoleArn=SETTINGS["role_arn"],
        PrimaryContainer={"Image": "od:1", "ModelDataUrl": f"s3://{BUCKET}/models/{model}.tar.gz"},
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=f"{model}-config",
        ProductionVariants=[
            {
                "VariantName": "All",
                "ModelName": f"{model}-model",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m4.xlarge",
            }
        ],
    )
    if any(e["EndpointName"] == SETTINGS["endpoint_name"] for e in sagemaker.list_endpoints()["Endpoints"]):
        sagemaker.delete_endpoint(EndpointName=SETTINGS["endpoint_name"])
    sagemaker.create_endpoint(EndpointName=SETTINGS["endpoint_name"], EndpointConfigName=f"{model}-config")
    return f"{model}-model"


def test_batch_transform_starts_one_job_on_the_listed_images_and_defers_to_its_trigger(s3: Any) -> None:
    model = _serve_on_moto()
    put_image(s3, "a.jpg", "JPEG", 64, 48)
    s3.put_object(Bucket=BUCKET, Key=f"{INCOMING}huge.jpg", Body=bytes(MAX_PAYLOAD_BYTES + 1))
    operator = BatchPredictOperator(
        task_id="predict", deferrable=True, waiter_delay=7, **operator_kwargs(predict_mode="batch_transform")
    )

    with pytest.raises(TaskDeferred) as deferred:
        operator.execute({"ti": MagicMock()})

    name = transform_job_name("active-learning", DAY)
    trigger = deferred.value.trigger
    assert isinstance(trigger, SageMakerTrigger)
    assert (trigger.job_type, trigger.job_name, trigger.serialize()[1]["waiter_delay"]) == (
        "transform",
        name,
        7,
    )
    assert deferred.value.kwargs is None
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    assert sagemaker.describe_transform_job(TransformJobName=name)["ModelName"] == model  # the serving one
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{RUNS}transform-input.manifest")["Body"].read())
    assert manifest == [{"prefix": f"s3://{BUCKET}/{INCOMING}"}, "a.jpg"]  # the oversize one is not sent

    # moto finishes the job at once and writes nothing: every image is quarantined with the reason
    result = operator.execute_complete({}, {"status": "success", "job_name": name})

    assert (result["images"], result["predicted"], result["quarantined"]) == (2, 0, 2)
    reasons = {line["source"].rsplit("/", 1)[-1]: line["reason"] for line in read_lines(s3, QUARANTINE)}
    assert reasons["a.jpg"] == f"the transform job {name} did not process it (Completed: Completed)"
    assert "bytes; InvokeEndpoint accepts at most 6 MB" in reasons["huge.jpg"]


def test_a_rerun_after_the_endpoint_changed_model_re_attaches_to_the_days_transform_job(s3: Any) -> None:
    """The day's job is the day's prediction: a rerun after the day's update (a new model serves)
    reads it again and starts no second job."""
    _serve_on_moto()
    put_image(s3, "a.jpg", "JPEG", 64, 48)
    operator_kwargs_ = operator_kwargs(predict_mode="batch_transform")
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    with pytest.raises(TaskDeferred):
        BatchPredictOperator(task_id="predict", deferrable=True, **operator_kwargs_).execute(
            {"ti": MagicMock()}
        )
    _serve_on_moto("newer")

    with pytest.raises(TaskDeferred) as deferred:
        BatchPredictOperator(task_id="predict", deferrable=True, **operator_kwargs_).execute(
            {"ti": MagicMock()}
        )

    name = transform_job_name("active-learning", DAY)
    assert deferred.value.trigger.job_name == name
    jobs = sagemaker.list_transform_jobs()["TransformJobSummaries"]
    assert [job["TransformJobName"] for job in jobs] == [name]
    assert sagemaker.describe_transform_job(TransformJobName=name)["ModelName"] == "served-model"


def _ended_job(name: str, status: str) -> dict[str, Any]:
    return {
        "TransformJobName": name,
        "TransformJobArn": f"arn:aws:sagemaker:{REGION}:123456789012:transform-job/{name}",
        "TransformJobStatus": status,
        "FailureReason": "CapacityError: no ml.m4.xlarge capacity",
        "ModelName": "served-model",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "ManifestFile", "S3Uri": "s3://b/m"}}
        },
        "TransformResources": {"InstanceType": "ml.m4.xlarge", "InstanceCount": 1},
        "CreationTime": time.time(),
    }


@pytest.mark.parametrize(
    ("status", "has_output", "attached"),
    [("Failed", False, False), ("Stopped", True, False), ("Failed", True, True), ("Completed", False, True)],
)
def test_only_a_transform_job_stopped_or_failed_without_output_is_followed_by_a_new_attempt(
    s3: Any, status: str, has_output: bool, attached: bool
) -> None:
    """A job that failed on some records wrote the day's predictions: they are read, not redone."""
    operator = make_operator(predict_mode="batch_transform")
    settings, day = operator.loop_settings, operator.run_day
    base = transform_job_name("active-learning", DAY)
    if has_output:
        s3.put_object(Bucket=BUCKET, Key=f"{transform_output_prefix(settings, day, base)}a.jpg.out")
    lineage = ModelLineageHook(aws_conn_id=None, region_name=REGION)
    with Stubber(lineage.conn) as stub:
        stub.add_response("describe_transform_job", _ended_job(base, status), {"TransformJobName": base})
        if not attached:
            stub.add_client_error(
                "describe_transform_job",
                "ValidationException",
                f"Could not find job {base}-r2",
                expected_params={"TransformJobName": f"{base}-r2"},
            )
        name, job = DayTransformJob(lineage, operator.s3, settings, day, operator.log).current_attempt()
        stub.assert_no_pending_responses()

    assert (name, job is None) == ((base, False) if attached else (f"{base}-r2", True))


def test_a_day_stops_after_three_transform_jobs_failed_without_output(s3: Any) -> None:
    operator = make_operator(predict_mode="batch_transform")
    base = transform_job_name("active-learning", DAY)
    lineage = ModelLineageHook(aws_conn_id=None, region_name=REGION)
    with Stubber(lineage.conn) as stub:
        for name in (base, f"{base}-r2", f"{base}-r3"):
            stub.add_response(
                "describe_transform_job", _ended_job(name, "Failed"), {"TransformJobName": name}
            )
        with pytest.raises(AirflowException, match="3 transform jobs of this day failed"):
            DayTransformJob(
                lineage, operator.s3, operator.loop_settings, operator.run_day, operator.log
            ).current_attempt()


@pytest.mark.parametrize("usable_image", [True, False])
def test_a_failed_transform_job_without_output_fails_the_run_only_when_an_image_was_usable(
    s3: Any, monkeypatch: pytest.MonkeyPatch, usable_image: bool
) -> None:
    """No output for a good image: the job broke (the run fails, a rerun starts the next attempt).
    A day of non-images only: the job failed on them, as SageMaker does, and they are quarantined."""
    if usable_image:
        put_image(s3, "a.jpg", "JPEG", 64, 48)
    s3.put_object(Bucket=BUCKET, Key=f"{INCOMING}notes.txt", Body=b"not an image")
    name = transform_job_name("active-learning", DAY)
    monkeypatch.setattr(ModelLineageHook, "describe_or_none", lambda *_, **__: _ended_job(name, "Failed"))
    operator = make_operator(predict_mode="batch_transform")

    if usable_image:
        with pytest.raises(AirflowException, match="is Failed and wrote no output: CapacityError"):
            operator.transform_result(operator.loop_settings, operator.run_day, name)
    else:
        result = operator.transform_result(operator.loop_settings, operator.run_day, name)
        assert (result["quarantined"], result["transform_job_status"]) == (1, "Failed")


def test_from_a_transform_job_only_the_images_routed_to_review_are_read(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Their size is what the reviewers' boxes need; one that is not a usable image is quarantined."""
    name = transform_job_name("active-learning", DAY)
    operator = make_operator(predict_mode="batch_transform", threshold=0.5)
    output = transform_output_prefix(operator.loop_settings, operator.run_day, name)
    answers = {"unsure.jpg": 0.3, "sure.jpg": 0.9, "broken.jpg": 0.2}
    for image, score in answers.items():
        s3.put_object(
            Bucket=BUCKET,
            Key=f"{output}{image}.out",
            Body=json.dumps({"prediction": [[0, score, 0.1, 0.1, 0.5, 0.5]]}).encode(),
        )
    put_image(s3, "unsure.jpg", "JPEG", 64, 48)
    put_image(s3, "sure.jpg", "JPEG", 32, 32)
    s3.put_object(Bucket=BUCKET, Key=f"{INCOMING}broken.jpg", Body=b"\xff\xd8 not really a JPEG")
    monkeypatch.setattr(ModelLineageHook, "describe_or_none", lambda *_, **__: _ended_job(name, "Completed"))
    reads: list[str] = []
    original = day_module.read_image
    recording = lambda *args: reads.append(args[2]) or original(*args)  # noqa: E731
    # the routing reads what is routed to review; the .out reader reads an image without a .out
    monkeypatch.setattr(day_module, "read_image", recording)
    monkeypatch.setattr(transform_module, "read_image", recording)

    result = operator.transform_result(operator.loop_settings, operator.run_day, name)

    assert (result["predicted"], result["quarantined"], result["to_review"]) == (2, 1, 1)
    assert sorted(reads) == [f"{INCOMING}broken.jpg", f"{INCOMING}unsure.jpg"]  # never sure.jpg
    lines = {line["source"].rsplit("/", 1)[-1]: line for line in read_lines(s3, PREDICTIONS)}
    assert (lines["unsure.jpg"]["width"], lines["unsure.jpg"]["height"], lines["unsure.jpg"]["review"]) == (
        64,
        48,
        True,
    )
    assert "width" not in lines["sure.jpg"]
    assert not lines["sure.jpg"]["review"]
    [quarantined] = read_lines(s3, QUARANTINE)
    assert quarantined["source"].endswith("broken.jpg")
    assert "not a decodable image" in quarantined["reason"]


@pytest.mark.parametrize(("count", "mode"), [(2, "batch_transform"), (1, "realtime")])
def test_auto_mode_chooses_by_the_days_object_count(s3: Any, count: int, mode: str) -> None:
    for index in range(count):
        put_image(s3, f"{index}.jpg", "JPEG", 32, 32)
    operator = make_operator(predict_mode="auto", transform_min_images=2)

    assert operator.predict_mode(operator.loop_settings, operator.run_day) == mode


# a day spread over shards (predict_shards) ---------------------------------------------------------


def shard_day(s3: Any, endpoint: FakeEndpoint, images: int = 36) -> None:
    """A day of images with varied scores and boxes (each image's size picks its answer), one without
    detections, one the model rejects and one unreadable object."""
    for index in range(images):
        width = 40 + index
        score = round((index * 37 % 100) / 100, 2)
        endpoint.script[(width, 30)] = [
            [float(index % 4), score, 0.1, 0.1, 0.3 + index / 200, 0.4],
            [float((index + 1) % 4), score / 2, 0.5, 0.5, 0.7, 0.9],
        ]
        put_image(s3, f"img-{index:03d}.{'png' if index % 5 == 0 else 'jpg'}", "JPEG", width, 30)
    endpoint.script[(200, 30)] = []
    put_image(s3, "nothing.jpg", "JPEG", 200, 30)
    endpoint.script[(201, 30)] = client_error("ModelError", "bad input", "InvokeEndpoint")
    put_image(s3, "rejected.jpg", "JPEG", 201, 30)
    put(s3, INCOMING + "broken.jpg", b"not an image")


def shards_then_route(shards: int, context: dict[str, Any], **settings: Any) -> dict[str, Any]:
    """The DAG's predict_shard tasks, one per shard, then batch_predict routing them."""
    results = [
        PredictShardOperator(
            task_id="predict_shard", shard=shard, shards=shards, **operator_kwargs(**settings)
        ).execute(context)
        for shard in range(shards)
    ]
    assert sum(result["images"] for result in results) == 39
    return BatchPredictOperator(task_id="predict", shards=shards, **operator_kwargs(**settings)).execute(
        context
    )


@pytest.mark.parametrize(
    "settings",
    [
        {"max_reviews": 6, "audit_fraction": 0.2, "random_share": 0.34},
        {"max_reviews": 12, "fill_review_budget": True, "selection_strategy": "box-uncertainty"},
        {"max_reviews": 5, "selection_strategy": "class-balance", "threshold": 0.6},
        {"threshold": 0.45, "audit_fraction": 0.1},
    ],
    ids=["random-share", "budget-fill", "class-balance", "no-cap"],
)
def test_shards_route_the_day_as_one_task_would(
    s3: Any, endpoint: FakeEndpoint, context: dict[str, Any], settings: dict[str, Any]
) -> None:
    shard_day(s3, endpoint)
    put(
        s3,
        f"{PREFIX}/runs/2026-11-25/augmented.manifest",
        json.dumps(
            {
                "source-ref": source("old.jpg"),
                "a2i-retraining": {
                    "annotations": [{"class_id": 1, "left": 1, "top": 1, "width": 5, "height": 5}]
                },
            }
        ).encode(),
    )
    whole = make_operator(**settings).execute(context)
    one_task = {key: sorted(read_text(s3, key).splitlines()) for key in (PREDICTIONS, QUARANTINE)}

    for shards in (2, 3):
        assert shards_then_route(shards, context, **settings) == whole
        # the same lines (the order is the shards', not the completion order of one task's requests)
        assert {key: sorted(read_text(s3, key).splitlines()) for key in (PREDICTIONS, QUARANTINE)} == one_task
    assert whole["images"] == 39
    assert whole["quarantined"] == 2
    assert whole["to_review"] > 0


def test_each_image_is_in_exactly_one_shard_and_a_rerun_reads_the_same(
    s3: Any, endpoint: FakeEndpoint, context: dict[str, Any]
) -> None:
    shard_day(s3, endpoint)
    shards = 4

    def shard_sources() -> list[set[str]]:
        return [
            {line["source"] for line in read_lines(s3, f"{RUNS}shards/{shard}-of-{shards}.jsonl")}
            for shard in range(shards)
        ]

    shards_then_route(shards, context)
    first = shard_sources()
    shards_then_route(shards, context)  # a rerun of the whole day, shards included

    assert shard_sources() == first
    assert all(first)
    assert sum(len(part) for part in first) == 39
    assert set().union(*first) == {line["source"] for line in read_lines(s3, PREDICTIONS)} | {
        line["source"] for line in read_lines(s3, QUARANTINE)
    }


def test_routing_fails_naming_a_shard_that_has_not_predicted(
    s3: Any, endpoint: FakeEndpoint, context: dict[str, Any]
) -> None:
    shard_day(s3, endpoint, images=4)
    PredictShardOperator(task_id="predict_shard", shard=0, shards=2, **operator_kwargs()).execute(context)

    with pytest.raises(
        AirflowException, match=r"runs/2026-11-26/shards/1-of-2\.jsonl is missing: predict_shard 1"
    ):
        BatchPredictOperator(task_id="predict", shards=2, **operator_kwargs()).execute(context)
    assert not exists(s3, PREDICTIONS)


@pytest.mark.parametrize("change", ["added", "removed"])
def test_routing_fails_when_the_days_images_changed_since_the_shards_ran(
    s3: Any, endpoint: FakeEndpoint, context: dict[str, Any], change: str
) -> None:
    shard_day(s3, endpoint, images=6)
    for shard in range(2):
        PredictShardOperator(task_id="predict_shard", shard=shard, shards=2, **operator_kwargs()).execute(
            context
        )
    if change == "added":
        put_image(s3, "late.jpg", "JPEG", 40, 30)
    else:
        s3.delete_object(Bucket=BUCKET, Key=INCOMING + "img-003.jpg")

    with pytest.raises(
        AirflowException, match=r"does not hold shard \d of .* as listed now .*\(clear predict_shard"
    ):
        BatchPredictOperator(task_id="predict", shards=2, **operator_kwargs()).execute(context)
    assert not exists(s3, PREDICTIONS)
    assert not exists(s3, QUARANTINE)


def test_a_shard_of_a_batch_transform_day_predicts_nothing(
    s3: Any, endpoint: FakeEndpoint, context: dict[str, Any]
) -> None:
    shard_day(s3, endpoint, images=4)

    result = PredictShardOperator(
        task_id="predict_shard",
        shard=1,
        shards=2,
        **operator_kwargs(predict_mode="auto", transform_min_images=5),
    ).execute(context)

    assert result == {"shard": 1, "images": 0, "quarantined": 0, "shard_uri": None, "mode": "batch_transform"}
    assert endpoint.calls == []
    assert not exists(s3, f"{RUNS}shards/1-of-2.jsonl")
