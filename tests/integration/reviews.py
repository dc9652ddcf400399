"""The review step's tasks run for real, whichever backend reviews: A2I on the local AWS, Label Studio
on a real server. Used by the backend-neutral suite and by the Label Studio tests."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from unittest import mock
from urllib.parse import quote

import pytest
from PIL import Image

from active_learning.operators.human_loops import StartHumanLoopsOperator
from active_learning.operators.human_workflow import CreateHumanReviewWorkflowOperator
from active_learning.operators.manifest import AugmentedManifestOperator
from active_learning.sensors.human_loops import HumanLoopSensor
from emulator.server import Emulator
from tests.integration.conftest import BUCKET, ROLE, WORKTEAM
from tools.label_studio import LabelStudioServer
from world import REFERENCE_METADATA
from world.scenes import DEMO_CLASSES, make_scenes

PREFIX = "active-learning"
AWS_CONN = "aws_reviews"
LS_CONN = "label_studio_reviews"


def connect(
    monkeypatch: pytest.MonkeyPatch, emulator: Emulator, label_studio: LabelStudioServer | None
) -> None:
    """Airflow connections to the local AWS and, when given, the Label Studio server."""
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{AWS_CONN.upper()}",
        f"aws://integration:integration@/?region_name=us-east-1&endpoint_url={quote(emulator.url, safe='')}",
    )
    if label_studio is not None:
        monkeypatch.setenv(f"AIRFLOW_CONN_{LS_CONN.upper()}", label_studio.connection_uri())


def settings(backend: str, **extra: Any) -> dict[str, Any]:
    return {
        "bucket": BUCKET,
        "prefix": PREFIX,
        "role_arn": ROLE,
        "workteam_arn": WORKTEAM,
        "class_names": list(DEMO_CLASSES),
        "review_backend": backend,
        **extra,
    }


def put_day(aws: Callable[[str], Any], day: str, count: int, seed: int = 3) -> list[dict[str, Any]]:
    """``count`` scenes in ``incoming/<day>/`` (reference boxes in their metadata) and the day's
    ``predictions.jsonl`` routing them all to review, with the model's boxes 4 pixels off."""
    s3 = aws("s3")
    records = []
    for index, (image, boxes) in enumerate(make_scenes(seed, count, DEMO_CLASSES)):
        key = f"{PREFIX}/incoming/{day}/scene-{index:04d}.jpg"
        reference = [{k: b[k] for k in ("label", "left", "top", "width", "height")} for b in boxes]
        s3.put_object(
            Bucket=BUCKET, Key=key, Body=image, Metadata={REFERENCE_METADATA: json.dumps(reference)}
        )
        width, height = Image.open(io.BytesIO(image)).size
        detections = [
            [
                float(DEMO_CLASSES.index(b["label"])),
                0.4,
                (b["left"] + 4) / width,
                (b["top"] + 4) / height,
                min(1.0, (b["left"] + b["width"] + 4) / width),
                min(1.0, (b["top"] + b["height"] + 4) / height),
            ]
            for b in reference
        ]
        records.append(
            {
                "source": f"s3://{BUCKET}/{key}",
                "width": width,
                "height": height,
                "format": "jpeg",
                "detections": detections,
                "top_score": 0.4,
                "review": True,
                "reason": "uncertain",
            }
        )
    body = "".join(json.dumps(record) + "\n" for record in records)
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/runs/{day}/predictions.jsonl", Body=body.encode())
    return records


def context() -> dict[str, Any]:
    return {"ti": mock.MagicMock()}


def common(**kwargs: Any) -> dict[str, Any]:
    return {"aws_conn_id": AWS_CONN, "region_name": "us-east-1", "review_conn_id": LS_CONN, **kwargs}


@dataclass
class ReviewStep:
    """The four review tasks of the DAG, for one backend and one day."""

    settings: dict[str, Any]
    day: str

    def set_up(self) -> dict[str, Any]:
        operator = CreateHumanReviewWorkflowOperator(
            task_id="create_human_review_workflow", settings=self.settings, waiter_delay=1, **common()
        )
        return operator.execute(context())

    def start(self, workflow: dict[str, Any]) -> dict[str, Any]:
        operator = StartHumanLoopsOperator(
            task_id="start_human_loops",
            settings=self.settings,
            day=self.day,
            review_set_up=workflow,
            **common(),
        )
        return operator.execute(context())

    def sensor(self, started: dict[str, Any], **kwargs: Any) -> HumanLoopSensor:
        kwargs = {"timeout": 120, "poke_interval": 0.5, "deferrable": False, **kwargs}
        return HumanLoopSensor(
            task_id="wait_for_human_loops",
            settings=self.settings,
            day=self.day,
            human_loops=started,
            **common(**kwargs),
        )

    def wait(self, started: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return self.sensor(started, **kwargs).execute(context())

    def manifest(self) -> dict[str, Any]:
        operator = AugmentedManifestOperator(
            task_id="augmented_manifest", settings=self.settings, day=self.day, **common()
        )
        return operator.execute(context())


def read_lines(aws: Callable[[str], Any], day: str, name: str) -> list[dict[str, Any]]:
    body = aws("s3").get_object(Bucket=BUCKET, Key=f"{PREFIX}/runs/{day}/{name}")["Body"].read()
    return [json.loads(line) for line in body.decode().splitlines() if line.strip()]
