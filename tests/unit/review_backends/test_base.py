"""The review backend interface: a backend defined here, in memory, registered by name, reviews a DAG
day through the DAG's own four review tasks, with no change to any operator or sensor."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import pytest
from airflow.dag_processing.dagbag import DagBag
from moto import mock_aws

from active_learning import reviews
from active_learning.hooks.s3_lines import put_json_lines
from active_learning.manifest import convert_review
from active_learning.review_backends.base import PredictedSize, ReviewBackend, ReviewUi
from active_learning.reviews import ReviewAnswer, ReviewedImage, ReviewProgress, ReviewRequest

ROOT = Path(__file__).parents[3]
BUCKET = "my-bucket"
DAY = "2026-11-26"
SETTINGS = {
    "bucket": BUCKET,
    "role_arn": "arn:aws:iam::123456789012:role/Reviews",
    "class_names": ["cat", "dog"],
    "review_backend": "memory",  # no workteam_arn: only A2I requires one
}
REVIEW_TASKS = (
    "create_human_review_workflow",
    "start_human_loops",
    "wait_for_human_loops",
    "augmented_manifest",
)


class MemoryReview(ReviewBackend):
    """Reviews kept in this process: each request is answered with the model's own boxes."""

    name = "memory"
    asked: dict[str, ReviewRequest] = {}
    answered: set[str] = set()

    def set_up(self, context: Any, ui: ReviewUi) -> dict[str, Any]:
        return {"review_backend": self.name, "title": ui.title}

    def start(
        self, requests: Iterable[ReviewRequest], set_up: Mapping[str, Any], context: Any
    ) -> dict[str, Any]:
        settings, day = self.settings, self.task.run_day
        for request in requests:
            self.asked[request.name] = request
        records = [
            {"name": name, "source": request.source, "reason": request.reason, "started": True}
            for name, request in sorted(self.asked.items())
        ]
        key = settings.run_key(day, "human-loops.jsonl")
        put_json_lines(self.task.s3, settings.bucket, key, records)
        return {
            "review_backend": self.name,
            "loops": len(records),
            "human_loops_uri": f"s3://{settings.bucket}/{key}",
        }

    def progress(self, started: Mapping[str, Any], own: frozenset[str]) -> ReviewProgress:
        self.answered.update(own)  # the reviewers answer at the first look
        statuses = ((name, "Completed", None) for name in self.answered)
        return ReviewProgress.from_statuses(statuses, own)

    def stop_open(self, started: Mapping[str, Any], own: frozenset[str]) -> int:
        return 0

    def harvest(
        self, records: Iterable[Mapping[str, Any]], predicted_size: PredictedSize
    ) -> Iterator[dict[str, Any]]:
        for record in records:
            request = self.asked[record["name"]]
            answer = ReviewAnswer(request.width, request.height, request.boxes, "2026-11-27T10:00:00Z")
            review = ReviewedImage(
                "memory review", request.name, request.source, (answer,), f"memory/{request.name}"
            )
            conversion = convert_review(
                review,
                self.settings.class_names,
                image_size=predicted_size,
                recorded=(record["name"], record["source"]),
            )
            yield {
                "name": record["name"],
                "source": record["source"],
                "outcome": "converted",
                "line": conversion.line,
            }


@pytest.fixture
def memory_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        reviews.REVIEW_BACKENDS, "memory", reviews.ReviewBackendEntry(f"{__name__}.MemoryReview")
    )
    MemoryReview.asked, MemoryReview.answered = {}, set()


def prediction(image: str, review: bool) -> dict[str, Any]:
    return {
        "source": f"s3://{BUCKET}/active-learning/incoming/{DAY}/{image}",
        "width": 200,
        "height": 100,
        "detections": [[0.0, 0.4, 0.1, 0.1, 0.5, 0.6]],  # a cat at 40 %, in normalized corners
        "review": review,
        "reason": "low-confidence" if review else "confident",
    }


def test_a_registered_backend_reviews_a_dag_day_through_the_dags_own_review_tasks(
    memory_backend: None,
) -> None:
    dag = DagBag(dag_folder=str(ROOT / "dags")).dags["active_learning"]
    set_up, start, wait, manifest = (dag.get_task(task_id) for task_id in REVIEW_TASKS)
    for task in (set_up, start, wait, manifest):  # what rendering the templates gives them
        task.settings = json.dumps(SETTINGS)
        task.day = DAY
    wait.deferrable, wait.poke_interval = False, 0
    context = {"ti": mock.MagicMock(), "outlet_events": mock.MagicMock()}
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        lines = [prediction("a.jpg", True), prediction("b.jpg", False), prediction("c.jpg", True)]
        s3.put_object(
            Bucket=BUCKET,
            Key=f"active-learning/runs/{DAY}/predictions.jsonl",
            Body="".join(json.dumps(line) + "\n" for line in lines),
        )
        for task in (set_up, start, wait, manifest):
            task.aws_conn_id, task.region_name = None, "us-east-1"

        start.review_set_up = set_up.execute(context)
        wait.human_loops = start.execute(context)
        waited = wait.execute(context)
        harvested = manifest.execute(context)
        body = s3.get_object(Bucket=BUCKET, Key=f"active-learning/runs/{DAY}/augmented.manifest")[
            "Body"
        ].read()

    assert start.review_set_up == {"review_backend": "memory", "title": "Review object detection boxes"}
    assert (waited["expected"], waited["completed"]) == (2, 2)
    assert (harvested["converted"], harvested["errored"]) == (2, 0)
    manifest_lines = [json.loads(line) for line in body.decode().splitlines()]
    assert [line["source-ref"].rsplit("/", 1)[1] for line in manifest_lines] == ["a.jpg", "c.jpg"]
    assert manifest_lines[0]["a2i-retraining"]["annotations"] == [
        {"class_id": 0, "left": 20, "top": 10, "width": 80, "height": 50}
    ]


def test_the_operators_and_the_sensor_name_no_backend() -> None:
    """Issue 16.1: the choice was ``if settings.review_backend == "label_studio"`` in three operators."""
    package = ROOT / "plugins" / "active_learning"
    for path in [*(package / "operators").glob("*.py"), *(package / "sensors").glob("*.py")]:
        assert not re.search(r"label_studio|a2i|LabelStudio|A2IRuntime", path.read_text()), path
