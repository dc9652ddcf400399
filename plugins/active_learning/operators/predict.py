"""Predict every image of the day with bounded concurrency and route the uncertain ones to review."""

from __future__ import annotations

import io
import json
import struct
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from botocore.exceptions import ClientError
from PIL import Image, UnidentifiedImageError

from active_learning.concurrency import bounded_map
from active_learning.detections import PredictionParseError, parse_prediction, top_score
from active_learning.hooks.errors import error_code, error_message
from active_learning.hooks.retries import client_config
from active_learning.hooks.s3_lines import S3JsonLinesWriter, iter_objects, labelled_lines
from active_learning.hooks.sagemaker_runtime import SageMakerRuntimeHook
from active_learning.operators.base import LoopOperatorMixin
from active_learning.routing import Decision, RoutingPolicy
from active_learning.selection import CLASS_BALANCE, SelectionStrategy, label_counts

CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # InvokeEndpoint's limit for real-time inference
# Largest image (width x height) sent to the endpoint. 40 megapixels is above what cameras and phones
# take by default (12-24 MP) and decodes to 120 MB of RGB in the model container; a larger image is a
# scan, a panorama or a decompression bomb: it is quarantined from its header, before any decoding.
MAX_IMAGE_PIXELS = 40_000_000


class Quarantined(Exception):
    """An input image that cannot be used; the reason goes to quarantine.jsonl."""


def _open_header(data: bytes) -> Image.Image:
    """Open an image, reading its header only.

    JPEG and PNG are opened with their own Pillow reader rather than ``Image.open``: ``Image.open``
    applies Pillow's decompression-bomb check (a warning from 89 MP, an error from 179 MP) before
    :data:`MAX_IMAGE_PIXELS`, which is lower, could refuse the image with a clear reason.
    """
    Image.preinit()  # registers the JPEG and PNG readers (once)
    stream = io.BytesIO(data)
    for image_format in CONTENT_TYPES:
        reader, accepts = Image.OPEN[image_format]  # the JPEG reader also reads MPO
        if accepts is not None and accepts(data[:16]) is True:
            return reader(stream, "")
    return Image.open(stream)  # any other format, only to name it


def image_properties(data: bytes) -> tuple[str, int, int]:
    """``(format, width, height)`` read from the image header with Pillow.

    :raises Quarantined: when the image is not JPEG/PNG, is larger than :data:`MAX_IMAGE_PIXELS`
        or is not decodable.
    """
    try:
        with _open_header(data) as image:
            image_format, (width, height) = image.format or "", image.size
            if image_format == "MPO":  # phone/camera photos: a JPEG with more pictures appended
                image_format = "JPEG"
            if image_format not in CONTENT_TYPES:
                raise Quarantined(f"unsupported image format {image_format}: only JPEG and PNG are accepted")
            if width * height > MAX_IMAGE_PIXELS:
                raise Quarantined(
                    f"image is {width}x{height} pixels ({width * height / 1e6:.1f} MP); "
                    f"at most {MAX_IMAGE_PIXELS / 1e6:g} MP are sent to the endpoint"
                )
            if image_format == "JPEG":
                # verify() does not read JPEG data: decode it at 1/8 scale (cheap) to catch truncation
                image.draft(None, (max(width // 8, 1), max(height // 8, 1)))
                image.load()
            else:
                image.verify()
    except UnidentifiedImageError as err:  # its message holds a memory address: keep reasons stable
        raise Quarantined("not a decodable image: not in a format Pillow can identify") from err
    # IndexError, struct.error: what a reader raises on a malformed header (Image.open hides them)
    except (OSError, SyntaxError, ValueError, IndexError, struct.error, Image.DecompressionBombError) as err:
        raise Quarantined(f"not a decodable image: {err}") from err
    return image_format, width, height


def read_bounded(body: Any, limit: int) -> bytes | None:
    """The whole stream if it holds at most ``limit`` bytes, else ``None``; reads at most ``limit + 1``.

    :param body: a readable stream (botocore's ``StreamingBody``); it is closed, so what is left
        of a larger object is never downloaded.
    """
    try:
        data = body.read(limit + 1)
    finally:
        body.close()
    return data if len(data) <= limit else None


def _decision(record: dict[str, Any]) -> Decision:
    return Decision(record["review"], record["reason"], record["top_score"])


class BatchPredictOperator(LoopOperatorMixin, AwsBaseOperator[SageMakerRuntimeHook]):
    """Predict the day's images and decide which go to human review.

    Lists ``incoming/<day>/``, invokes the endpoint for each image with at most ``concurrency``
    requests in flight (botocore adaptive retries), applies the routing policy to the whole day and
    writes ``runs/<day>/predictions.jsonl`` and ``runs/<day>/quarantine.jsonl`` (inputs that could
    not be used, with the reason). Objects over 6 MB (InvokeEndpoint's limit, size from the listing) are
    quarantined without being downloaded, and images over :data:`MAX_IMAGE_PIXELS` (40 megapixels, read
    from the header) without being decoded. Images are streamed and results spooled to a local file, so memory
    does not grow with the day's image count (the review cap keeps at most ``max_reviews`` entries).

    :param settings: the loop settings (see :class:`active_learning.settings.LoopSettings`).
    :param day: the day to process, ``YYYY-MM-DD``.
    :param concurrency: endpoint requests in flight at most.
    """

    aws_hook_class = SageMakerRuntimeHook
    template_fields: Sequence[str] = aws_template_fields("settings", "day")

    def __init__(
        self, *, settings: Mapping[str, Any] | str, day: str, concurrency: int = 8, **kwargs: Any
    ) -> None:
        kwargs.setdefault("botocore_config", client_config(concurrency))
        super().__init__(**kwargs)
        self.settings = settings
        self.day = day
        self.concurrency = concurrency

    def execute(self, context: Any) -> dict[str, Any]:
        settings, day = self.loop_settings, self.run_day
        selection = SelectionStrategy(settings.selection_strategy, settings.random_share)
        policy = RoutingPolicy(settings.threshold, settings.max_reviews, settings.audit_fraction, selection)
        counts: Mapping[int, int] = {}
        if selection.name == CLASS_BALANCE and settings.max_reviews is not None:
            # the labels of the days before this one (a rerun of the day must not count its own)
            counts = label_counts(
                labelled_lines(self.s3, settings, day - timedelta(days=1)), settings.label_attribute
            )
            self.log.info("Labelled boxes per class so far: %s", dict(sorted(counts.items())))
        s3 = self.s3.get_conn()
        runtime = self.hook
        runtime.get_conn()  # create the client once, before the worker threads share it

        def predict(listed: tuple[str, int]) -> dict[str, Any]:
            key, size = listed
            source = f"s3://{settings.bucket}/{key}"
            too_large = f"; InvokeEndpoint accepts at most 6 MB ({MAX_PAYLOAD_BYTES} bytes)"
            try:
                if size > MAX_PAYLOAD_BYTES:  # from the listing: never downloaded
                    raise Quarantined(f"object is {size} bytes{too_large}")
                # Bounded: the object may have grown since it was listed.
                data = read_bounded(s3.get_object(Bucket=settings.bucket, Key=key)["Body"], MAX_PAYLOAD_BYTES)
                if data is None:
                    raise Quarantined(f"object is over {MAX_PAYLOAD_BYTES} bytes{too_large}")
                image_format, width, height = image_properties(data)
                try:
                    body = runtime.invoke_endpoint(settings.endpoint_name, data, CONTENT_TYPES[image_format])
                except ClientError as err:
                    if error_code(err) != "ModelError":
                        raise  # endpoint missing, access denied, retries exhausted: the run must fail
                    raise Quarantined(f"the model rejected the image: {error_message(err)}") from err
                try:
                    detections = parse_prediction(body)
                except PredictionParseError as err:
                    raise Quarantined(f"unreadable prediction: {err}") from err
            except Quarantined as err:
                return {"source": source, "reason": str(err)}
            decision = policy.with_audit(policy.decide(detections), day.isoformat(), source)
            return {
                "source": source,
                "width": width,
                "height": height,
                "format": image_format,
                "detections": [detection.to_list() for detection in detections],
                "top_score": top_score(detections),
                "rank": selection.rank(detections, counts),
                "review": decision.review,
                "reason": decision.reason,
            }

        budget = policy.budget(day.isoformat())
        reasons: Counter[str] = Counter()
        images = reviews = 0
        objects = iter_objects(s3, settings.bucket, settings.incoming_prefix(day))
        predictions = S3JsonLinesWriter(self.s3, settings.bucket, settings.run_key(day, "predictions.jsonl"))
        quarantine = S3JsonLinesWriter(self.s3, settings.bucket, settings.run_key(day, "quarantine.jsonl"))
        with tempfile.TemporaryFile("w+", encoding="utf-8") as spool, quarantine, predictions:
            for _, record in bounded_map(predict, objects, self.concurrency):
                images += 1
                if "detections" not in record:
                    self.log.warning("Quarantined %s: %s", record["source"], record["reason"])
                    quarantine.write(record)
                    continue
                # the strategy's rank is all the second pass needs from the first: not written out
                budget.offer(record["source"], _decision(record), tuple(record.pop("rank")))
                spool.write(json.dumps(record) + "\n")
            # The review cap needs the whole day: a second pass over the spool applies it.
            spool.seek(0)
            for line in spool:
                record = json.loads(line)
                decision = budget.final(record["source"], _decision(record))
                reasons[decision.reason] += 1
                reviews += decision.review
                predictions.write({**record, "review": decision.review, "reason": decision.reason})
        result = {
            "images": images,
            "predicted": predictions.count,
            "quarantined": quarantine.count,
            "to_review": reviews,
            "reasons": dict(reasons),
            "predictions_uri": predictions.uri,
            "quarantine_uri": quarantine.uri,
        }
        self.log.info("Predictions of %s: %s", day, result)
        return result
