"""Demo data on the local AWS: the bucket, a weak initial model, a fixed validation set, daily images.

``python -m tools.seed --url URL`` seeds a running emulator (the docker-compose ``aws-seed``
service does this); ``tools.demo`` calls :func:`seed` on its own emulator.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import boto3

from world import REFERENCE_METADATA
from world.model import LocalDetector, train
from world.scenes import WORLDS, World, make_scenes

BUCKET = "active-learning-demo"
PREFIX = "active-learning"
INITIAL_MODEL = f"s3://{BUCKET}/models/initial/model.tar.gz"
VALIDATION_MANIFEST = f"s3://{BUCKET}/validation/validation.manifest"
# the SNS topic the example loops file alerts (the local AWS's account is moto's default)
ALERT_TOPIC = "active-learning-alerts"
ALERT_TOPIC_ARN = f"arn:aws:sns:us-east-1:123456789012:{ALERT_TOPIC}"
BOX_KEYS = ("left", "top", "width", "height")


def reference_metadata(boxes: list[dict[str, Any]]) -> dict[str, str]:
    """The reference reviewer reads an image's true boxes from this S3 metadata."""
    return {
        REFERENCE_METADATA: json.dumps(
            [{"label": box["label"], **{k: box[k] for k in BOX_KEYS}} for box in boxes]
        )
    }


def upload_validation_set(s3: Any, world: World) -> None:
    """A fixed, labelled validation manifest: every model is gated on the same images."""
    lines = []
    for index, (image, boxes) in enumerate(make_scenes(500, 40, world)):
        key = f"validation/scene-{index:04d}.jpg"
        s3.put_object(Bucket=BUCKET, Key=key, Body=image, ContentType="image/jpeg")
        annotations = [{"class_id": box["class_id"], **{k: box[k] for k in BOX_KEYS}} for box in boxes]
        size = [{"width": 96, "height": 96, "depth": 3}]
        lines.append(
            json.dumps(
                {
                    "source-ref": f"s3://{BUCKET}/{key}",
                    "a2i-retraining": {"annotations": annotations, "image_size": size},
                }
            )
        )
    s3.put_object(Bucket=BUCKET, Key="validation/validation.manifest", Body="\n".join(lines).encode())


def seed(
    s3: Any,
    first_day: date,
    days: int,
    images_per_day: int,
    world: World,
    prefixes: tuple[str, ...] = (PREFIX,),
) -> LocalDetector:
    """Create everything the demo needs; returns the deliberately weak initial model (4 scenes).

    :param prefixes: the loops' key prefixes, each getting the days' images (the same scenes).
    """
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):  # seeding twice is fine
        s3.create_bucket(Bucket=BUCKET)
    weak = train(None, make_scenes(1, 4, world), world.classes)
    s3.put_object(Bucket=BUCKET, Key="models/initial/model.tar.gz", Body=weak.to_artifact())
    upload_validation_set(s3, world)
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        for index, (image, boxes) in enumerate(make_scenes(100 + offset, images_per_day, world)):
            for prefix in prefixes:
                s3.put_object(
                    Bucket=BUCKET,
                    Key=f"{prefix}/incoming/{day}/scene-{index:04d}.jpg",
                    Body=image,
                    ContentType="image/jpeg",
                    Metadata=reference_metadata(boxes),
                )
    return weak


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="the emulator's URL")
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--images-per-day", type=int, default=40)
    # docker-compose's AL_CLASS_NAMES names the easy world's 4 classes
    parser.add_argument("--world", choices=list(WORLDS), default="easy", help="how hard the scenes are")
    parser.add_argument(
        "--first-day", type=date.fromisoformat, help="default: the last --days days before today"
    )
    parser.add_argument(
        "--prefix",
        dest="prefixes",
        action="append",
        help=f"a loop's key prefix to put the days' images under (repeatable; default {PREFIX})",
    )
    args = parser.parse_args(argv)
    first_day = args.first_day or datetime.now(UTC).date() - timedelta(days=args.days)
    session = boto3.Session(aws_access_key_id="seed", aws_secret_access_key="seed", region_name="us-east-1")
    s3 = session.client("s3", endpoint_url=args.url)
    prefixes = tuple(args.prefixes or (PREFIX,))
    seed(s3, first_day, args.days, args.images_per_day, WORLDS[args.world], prefixes)
    session.client("sns", endpoint_url=args.url).create_topic(Name=ALERT_TOPIC)  # idempotent
    print(
        f"seeded s3://{BUCKET}: initial model, validation set, {args.days} days from {first_day} under "
        f"{', '.join(prefixes)}; SNS topic {ALERT_TOPIC_ARN}"
    )


if __name__ == "__main__":
    main()
