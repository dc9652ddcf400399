"""Training jobs that really train: the built-in algorithm's channels, the local model, validation mAP."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emulator.sagemaker_ext import TrainingJob

ObjectReader = Callable[[str], bytes]


def _channels(job: TrainingJob) -> dict[str, dict[str, Any]]:
    channels = {channel["ChannelName"]: channel for channel in job.request.get("InputDataConfig", [])}
    for required in ("train", "validation"):
        if required not in channels:
            raise ValueError(f"the {required} channel is required by the object-detection algorithm")
    return channels


def _samples(
    get_object: ObjectReader, channel: dict[str, Any]
) -> Iterator[tuple[bytes, list[dict[str, Any]]]]:
    """(image, annotations) of every line of an augmented manifest channel, as the algorithm reads them."""
    source = channel["DataSource"]["S3DataSource"]
    if source.get("S3DataType") != "AugmentedManifestFile":
        raise ValueError(f"channel {channel['ChannelName']}: expected S3DataType AugmentedManifestFile")
    if channel.get("RecordWrapperType") != "RecordIO" or channel.get("InputMode", "Pipe") != "Pipe":
        raise ValueError(f"channel {channel['ChannelName']}: augmented manifests need Pipe mode and RecordIO")
    names = source.get("AttributeNames") or []
    if len(names) != 2 or names[0] != "source-ref":
        raise ValueError(f"channel {channel['ChannelName']}: AttributeNames must be [source-ref, <labels>]")
    for number, text in enumerate(get_object(source["S3Uri"]).decode().splitlines(), start=1):
        if not text.strip():
            continue
        line = json.loads(text)
        boxes = line[names[1]]["annotations"]
        if not boxes:  # as the built-in algorithm does: an empty line breaks training
            raise ValueError(f"line {number} of {source['S3Uri']} has empty annotations")
        yield get_object(line["source-ref"]), boxes


def train_job(job: TrainingJob, get_object: ObjectReader, put_object: Callable[[str, bytes], None]) -> float:
    """Train from the ``model`` channel's artifact on the ``train`` channel; return validation mAP."""
    from world.evaluation import image_size, mean_average_precision
    from world.model import LocalDetector, train

    channels = _channels(job)
    previous = None
    if "model" in channels:
        previous = LocalDetector.from_artifact(
            get_object(channels["model"]["DataSource"]["S3DataSource"]["S3Uri"])
        )
    classes = previous.classes if previous else None
    if classes is None:
        raise ValueError("the local algorithm needs a model channel with the previous model")
    model = train(previous, _samples(get_object, channels["train"]), classes)
    put_object(job.artifact, model.to_artifact())
    validation = list(_samples(get_object, channels["validation"]))
    return mean_average_precision(
        [model.predict(image) for image, _ in validation],
        [boxes for _, boxes in validation],
        len(classes),
        sizes=[image_size(image) for image, _ in validation],
    )
