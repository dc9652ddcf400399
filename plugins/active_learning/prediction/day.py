"""Predict every object of a day with a predictor (in one task, or in shards of the day), route the
whole day, write its two files."""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, NamedTuple

from active_learning.concurrency import bounded_map
from active_learning.detections import Detection, PredictionParseError, parse_prediction, top_score
from active_learning.hooks.s3_lines import S3ClientHook, S3JsonLinesWriter, iter_objects, labelled_lines
from active_learning.images import ImageProperties, Quarantined, read_image
from active_learning.routing import Decision, RoutingPolicy
from active_learning.selection import CLASS_BALANCE, SelectionStrategy, label_counts
from active_learning.settings import LoopSettings


class ImagePrediction(NamedTuple):
    """The model's answer for one image, before parsing."""

    body: bytes
    #: the image's format and size, or ``None`` when the predictor did not read the image (a
    #: transform job's output): read later, only if it is routed to review
    image: ImageProperties | None


#: ``predict(key, listed size)``: one object of the day; raises :class:`Quarantined` for an unusable one.
Predictor = Callable[[str, int], ImagePrediction]


def image_fields(image: ImageProperties) -> dict[str, Any]:
    return {"width": image.width, "height": image.height, "format": image.format}


def _decision(record: dict[str, Any]) -> Decision:
    return Decision(record["review"], record["reason"], record["top_score"])


def shard_of(key: str, shards: int) -> int:
    """Which of ``shards`` shards ``key`` belongs to: a hash of the key (CRC-32, the same in every
    process and on every rerun), so each shard reads its own part of the day's listing."""
    return zlib.crc32(key.encode("utf-8")) % shards


@dataclass
class KeysDigest:
    """How many keys, and the sum of their 64-bit hashes: the same for the same keys in any order,
    in constant memory (the day's listing against what a shard's file holds)."""

    count: int = 0
    total: int = 0

    def add(self, key: str) -> None:
        self.count += 1
        hashed = int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big")
        self.total = (self.total + hashed) % 2**64


def shard_digests(keys: Iterable[str], shards: int) -> list[KeysDigest]:
    """Each shard's :class:`KeysDigest` of ``keys`` (the day's listing)."""
    digests = [KeysDigest() for _ in range(shards)]
    for key in keys:
        digests[shard_of(key, shards)].add(key)
    return digests


def shard_key(settings: LoopSettings, day: date, shard: int, shards: int) -> str:
    """Where one shard's predictions wait for the day's routing."""
    return settings.run_key(day, f"shards/{shard}-of-{shards}.jsonl")


def predict_records(
    s3: S3ClientHook,
    settings: LoopSettings,
    day: date,
    predict: Predictor,
    concurrency: int,
    shard: tuple[int, int] = (0, 1),
) -> Iterator[dict[str, Any]]:
    """Predict the objects of ``incoming/<day>/`` (those of ``shard``: index and count) with at most
    ``concurrency`` in flight; yields, in completion order, a record per object: its source, image
    fields, detections and top score, or its source and the reason it is quarantined."""
    index, shards = shard

    def predict_one(listed: tuple[str, int]) -> dict[str, Any]:
        key, size = listed
        source = f"s3://{settings.bucket}/{key}"
        try:
            prediction = predict(key, size)
            try:
                detections = parse_prediction(prediction.body)
            except PredictionParseError as err:
                raise Quarantined(f"unreadable prediction: {err}") from err
        except Quarantined as err:
            return {"source": source, "reason": str(err)}
        return {
            "source": source,
            **({} if prediction.image is None else image_fields(prediction.image)),
            "detections": [detection.to_list() for detection in detections],
            "top_score": top_score(detections),
        }

    objects = iter_objects(s3.get_conn(), settings.bucket, settings.incoming_prefix(day))
    if shards > 1:
        objects = (listed for listed in objects if shard_of(listed[0], shards) == index)
    for _, record in bounded_map(predict_one, objects, concurrency):
        yield record


def route_day(
    s3: S3ClientHook,
    settings: LoopSettings,
    day: date,
    records: Iterable[Mapping[str, Any]],
    log: logging.Logger,
) -> dict[str, Any]:
    """Route the whole day's records (from :func:`predict_records`, of every shard): threshold,
    audit, review budget by the selection strategy; write ``runs/<day>/predictions.jsonl`` and
    ``runs/<day>/quarantine.jsonl``; returns the day's counts. The decisions do not depend on the
    records' order (:class:`ReviewBudget`), so the shards of a day route as the whole day would.

    Records are spooled to a local file, so memory does not grow with the day's image count. An
    image routed to review that the predictor did not read is read here, for its size (the
    reviewers' boxes need it).
    """
    selection = SelectionStrategy(settings.selection_strategy, settings.random_share)
    policy = RoutingPolicy(
        settings.threshold,
        settings.max_reviews,
        settings.audit_fraction,
        selection,
        settings.fill_review_budget,
    )
    counts: Mapping[int, int] = {}
    if selection.name == CLASS_BALANCE and settings.max_reviews is not None:
        # the labels of the days before this one (a rerun of the day must not count its own)
        counts = label_counts(labelled_lines(s3, settings, day - timedelta(days=1)), settings.label_attribute)
        log.info("Labelled boxes per class so far: %s", dict(sorted(counts.items())))
    client = s3.get_conn()
    budget = policy.budget(day.isoformat())
    bucket_uri = f"s3://{settings.bucket}/"
    reasons: Counter[str] = Counter()
    images = reviews = 0
    predictions = S3JsonLinesWriter(s3, settings.bucket, settings.run_key(day, "predictions.jsonl"))
    quarantine = S3JsonLinesWriter(s3, settings.bucket, settings.run_key(day, "quarantine.jsonl"))
    with tempfile.TemporaryFile("w+", encoding="utf-8") as spool, quarantine, predictions:
        for record in records:
            images += 1
            if "detections" not in record:
                log.warning("Quarantined %s: %s", record["source"], record["reason"])
                quarantine.write(record)
                continue
            detections = [Detection.from_list(row) for row in record["detections"]]
            decision = policy.with_audit(policy.decide(detections), day.isoformat(), record["source"])
            # the strategy's rank is all the second pass needs from the first: not written out
            budget.offer(record["source"], decision, tuple(selection.rank(detections, counts)))
            spool.write(json.dumps({**record, "review": decision.review, "reason": decision.reason}) + "\n")
        # The review cap needs the whole day: a second pass over the spool applies it.
        spool.seek(0)
        for line in spool:
            record = json.loads(line)
            decision = budget.final(record["source"], _decision(record))
            if decision.review and "width" not in record:
                try:
                    _, image = read_image(client, settings.bucket, record["source"][len(bucket_uri) :])
                except Quarantined as err:  # its review slot stays unused: rare, the model read it
                    log.warning("Quarantined %s: %s", record["source"], err)
                    quarantine.write({"source": record["source"], "reason": str(err)})
                    continue
                record = {"source": record["source"], **image_fields(image), **record}
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
    log.info("Predictions of %s: %s", day, result)
    return result


def predict_and_route_day(
    s3: S3ClientHook,
    settings: LoopSettings,
    day: date,
    predict: Predictor,
    concurrency: int,
    log: logging.Logger,
) -> dict[str, Any]:
    """The day in one task: :func:`predict_records` of every object, then :func:`route_day`."""
    return route_day(s3, settings, day, predict_records(s3, settings, day, predict, concurrency), log)
