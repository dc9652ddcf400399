"""The Label Studio backend against a real Label Studio server and the local AWS."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from active_learning.hooks.label_studio import LabelStudioHook
from active_learning.review_backends.label_studio import max_calls_per_check, project_title
from active_learning.settings import LoopSettings
from active_learning.triggers.label_studio import LabelStudioReviewTrigger
from tests.integration.reviews import (
    AWS_CONN,
    LS_CONN,
    ReviewStep,
    connect,
    put_day,
    read_lines,
    settings,
)
from tools.label_studio import LabelStudioClient, LabelStudioServer, percent_result
from world.scenes import DEMO_CLASSES


@pytest.fixture
def connected(
    emulator, label_studio: LabelStudioServer, monkeypatch: pytest.MonkeyPatch
) -> LabelStudioServer:
    connect(monkeypatch, emulator, label_studio)
    return label_studio


def client(server: LabelStudioServer) -> LabelStudioClient:
    return LabelStudioClient(server.url, server.token)


def day_tasks(server: LabelStudioServer, project_id: int, day: str) -> list[dict[str, Any]]:
    return list(LabelStudioHook(LS_CONN).day_tasks(project_id, day))


def test_personal_access_tokens_work_and_legacy_tokens_are_off(connected: LabelStudioServer) -> None:
    hook = LabelStudioHook(LS_CONN)
    assert hook.request("GET", "/api/projects/")["results"] is not None
    assert hook.authorization().startswith("Bearer ")
    # 1.23 creates organizations with legacy tokens disabled: "Token <key>" is refused
    legacy = requests.get(
        f"{connected.url}/api/projects/", headers={"Authorization": "Token 0123456789abcdef"}, timeout=30
    )
    assert legacy.status_code == 401


def test_the_project_is_set_up_once_per_class_list_and_settings(connected: LabelStudioServer) -> None:
    step = ReviewStep(settings("label_studio"), "2026-03-01")
    first, second = step.set_up(), step.set_up()
    assert first == second
    assert first["review_backend"] == "label_studio"
    project = client(connected).call("GET", f"/api/projects/{first['label_studio_project_id']}/")
    assert project["title"] == project_title(LoopSettings.from_mapping(settings("label_studio")))
    assert 'canRotate="false"' in project["label_config"]
    for name in DEMO_CLASSES:
        assert f'<Label value="{name}"/>' in project["label_config"]
    assert project["maximum_annotations"] == 1
    other = ReviewStep(settings("label_studio", class_names=["cat", "dog"]), "2026-03-01").set_up()
    assert other["label_studio_project_id"] != first["label_studio_project_id"]


def serve(sagemaker: Any, number: int) -> None:
    """Endpoint ``ls-endpoint`` serving model ``serving-model-<number>``."""
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/object-detection:1"
    sagemaker.create_model(
        ModelName=f"serving-model-{number}",
        PrimaryContainer={"Image": image, "ModelDataUrl": f"s3://integration-bucket/m{number}.tar.gz"},
        ExecutionRoleArn="arn:aws:iam::123456789012:role/Integration",
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=f"serving-config-{number}",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": f"serving-model-{number}",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m4.xlarge",
            }
        ],
    )
    if number > 1:
        sagemaker.delete_endpoint(EndpointName="ls-endpoint")
    sagemaker.create_endpoint(EndpointName="ls-endpoint", EndpointConfigName=f"serving-config-{number}")


def test_tasks_carry_the_models_boxes_as_a_prediction_of_the_serving_model(
    connected: LabelStudioServer, aws: Callable[[str], Any]
) -> None:
    serve(aws("sagemaker"), 1)
    day = "2026-03-02"
    records = put_day(aws, day, 2)
    step = ReviewStep(settings("label_studio", endpoint_name="ls-endpoint"), day)
    started = step.start(step.set_up())
    tasks = day_tasks(connected, started["label_studio_project_id"], day)
    assert len(tasks) == 2
    by_source = {task["data"]["source"]: task for task in tasks}
    record = records[0]
    task = by_source[record["source"]]
    assert task["data"]["model"] == "serving-model-1"
    (prediction,) = task["predictions"]
    assert prediction["model_version"] == "serving-model"
    assert len(prediction["result"]) == len(record["detections"])
    first = prediction["result"][0]["value"]
    assert first["x"] == pytest.approx(100 * record["detections"][0][2], abs=0.01)
    assert first["rectanglelabels"] == [DEMO_CLASSES[int(record["detections"][0][0])]]
    # the reviewer's browser loads the image by a presigned URL of the bucket
    assert requests.get(task["data"]["image"], timeout=30).content[:2] == b"\xff\xd8"
    # a later day reviewed after a newer model is deployed: the labeling page (the task API, which
    # shows the project's model version only) still pre-draws the older day's boxes
    serve(aws("sagemaker"), 2)
    later = "2026-03-12"
    put_day(aws, later, 1)
    ReviewStep(settings("label_studio", endpoint_name="ls-endpoint"), later).start(step.set_up())
    (newer,) = day_tasks(connected, started["label_studio_project_id"], later)
    assert newer["data"]["model"] == "serving-model-2"
    for shown in (task, newer):
        opened = client(connected).call("GET", f"/api/tasks/{shown['id']}/")
        assert [p["model_version"] for p in opened["predictions"]] == ["serving-model"]


def test_a_task_label_studio_kept_no_prediction_for_gets_it_added(
    connected: LabelStudioServer, aws: Callable[[str], Any]
) -> None:
    """Label Studio 1.23 can store an import's tasks without their predictions and answer 201."""
    day = "2026-03-13"
    records = put_day(aws, day, 2)
    step = ReviewStep(settings("label_studio"), day)
    workflow = step.set_up()
    project_id = workflow["label_studio_project_id"]
    step.start(workflow)
    (bare, boxed) = sorted(day_tasks(connected, project_id, day), key=lambda task: task["id"])
    for prediction in bare["predictions"]:  # what such an import leaves
        client(connected).call("DELETE", f"/api/predictions/{prediction['id']}/")
    assert client(connected).call("GET", f"/api/tasks/{bare['id']}/")["predictions"] == []

    again = step.start(workflow)  # a retry, or a rerun of the day

    assert (again["started"], again["adopted"]) == (0, 2)
    for task in day_tasks(connected, project_id, day):
        (prediction,) = client(connected).call("GET", f"/api/tasks/{task['id']}/")["predictions"]
        record = next(r for r in records if r["source"] == task["data"]["source"])
        assert len(prediction["result"]) == len(record["detections"])
    assert boxed["predictions"]


def test_a_retry_after_a_partial_import_adopts_and_adds_only_the_missing(
    connected: LabelStudioServer, aws: Callable[[str], Any]
) -> None:
    day = "2026-03-03"
    put_day(aws, day, 3)
    step = ReviewStep(settings("label_studio"), day)
    workflow = step.set_up()
    first = step.start(workflow)
    assert (first["started"], first["adopted"]) == (3, 0)
    # a kill after the import: the day's file is gone, and one more image is routed
    aws("s3").delete_object(Bucket="integration-bucket", Key=f"active-learning/runs/{day}/human-loops.jsonl")
    put_day(aws, day, 4)
    second = step.start(workflow)
    assert (second["started"], second["adopted"], second["loops"]) == (1, 3, 4)
    tasks = day_tasks(connected, workflow["label_studio_project_id"], day)
    assert len(tasks) == 4  # 0 duplicates
    assert len({task["data"]["name"] for task in tasks}) == 4


def test_a_check_of_250_tasks_costs_ceil_n_over_100_plus_one_calls(
    connected: LabelStudioServer, aws: Callable[[str], Any]
) -> None:
    hook = LabelStudioHook(LS_CONN)
    project = hook.ensure_project("paging-check", DEMO_CLASSES, "paging", 1)
    tasks = [
        {"data": {"image": "http://127.0.0.1:9/x.jpg", "name": f"t{i:03d}", "day": "2026-03-04"}}
        for i in range(250)
    ]
    tasks += [
        {"data": {"image": "http://127.0.0.1:9/x.jpg", "name": f"o{i}", "day": "2026-03-05"}}
        for i in range(5)
    ]
    hook.import_tasks(project["id"], tasks)
    checking = LabelStudioHook(LS_CONN)
    names = frozenset(f"t{i:03d}" for i in range(250))
    progress = checking.day_progress(project["id"], "2026-03-04", names, 1)
    assert progress.seen == 250  # the other day's tasks are not listed
    assert checking.calls == max_calls_per_check(250) == math.ceil(250 / 100) + 1


def test_an_annotation_becomes_the_manifest_line_with_the_reviewers_box(
    connected: LabelStudioServer, aws: Callable[[str], Any]
) -> None:
    day = "2026-03-06"
    records = put_day(aws, day, 1)
    step = ReviewStep(settings("label_studio"), day)
    started = step.start(step.set_up())
    (task,) = day_tasks(connected, started["label_studio_project_id"], day)
    record = records[0]
    width, height = record["width"], record["height"]
    moved = {"label": DEMO_CLASSES[0], "left": 10, "top": 12, "width": 30, "height": 20}
    client(connected).call(
        "POST",
        f"/api/tasks/{task['id']}/annotations/",
        json={"result": [percent_result(moved, width, height)]},
    )
    assert step.wait(started)["completed"] == 1
    assert step.manifest()["converted"] == 1
    (line,) = read_lines(aws, day, "augmented.manifest")
    assert line["source-ref"] == record["source"]
    assert line["a2i-retraining"]["annotations"] == [
        {"class_id": 0, "left": 10, "top": 12, "width": 30, "height": 20}
    ]
    assert line["a2i-retraining"]["image_size"] == [{"width": width, "height": height, "depth": 3}]
    assert line["a2i-retraining-metadata"]["job-name"] == f"label-studio/{task['data']['name']}"


def test_only_the_runs_own_tasks_are_harvested_each_for_the_image_the_run_recorded(
    connected: LabelStudioServer, aws: Callable[[str], Any]
) -> None:
    """Issue 15.7: a second task with the same name replaced the real task's boxes; a task whose
    data.source named another image of the day wrote a manifest line for that other image."""
    day = "2026-03-09"  # a day of its own: the project is the session's
    records = put_day(aws, day, 2)
    step = ReviewStep(settings("label_studio"), day)
    started = step.start(step.set_up())
    project = started["label_studio_project_id"]
    real, other = sorted(day_tasks(connected, project, day), key=lambda t: t["data"]["source"])
    ls = client(connected)
    width, height = real["data"]["width"], real["data"]["height"]

    def annotate(task_id: int, label: str) -> None:
        box = {"label": label, "left": 10, "top": 12, "width": 30, "height": 20}
        ls.call(
            "POST",
            f"/api/tasks/{task_id}/annotations/",
            json={"result": [percent_result(box, width, height)]},
        )

    annotate(real["id"], DEMO_CLASSES[0])
    # an impostor: the same name as the real task, the same day, other boxes, imported by someone else
    ls.call("POST", f"/api/projects/{project}/import", json=[{"data": {**real["data"]}}])
    (impostor_id,) = {t["id"] for t in day_tasks(connected, project, day)} - {real["id"], other["id"]}
    annotate(impostor_id, DEMO_CLASSES[1])
    # the other recorded task now says it shows the first image
    ls.call(
        "PATCH",
        f"/api/tasks/{other['id']}",
        json={"data": {**other["data"], "source": real["data"]["source"]}},
    )
    annotate(other["id"], DEMO_CLASSES[2])

    assert step.manifest()["converted"] == 1
    (line,) = read_lines(aws, day, "augmented.manifest")
    assert line["source-ref"] == real["data"]["source"]
    assert [box["class_id"] for box in line["a2i-retraining"]["annotations"]] == [0]  # not the impostor's
    report = {entry["name"]: entry for entry in read_lines(aws, day, "manifest-report.jsonl")}
    assert len(report) == len(records)  # the recorded tasks only
    assert report[other["data"]["name"]]["outcome"] == "error"
    assert report[other["data"]["name"]]["reason"] == (
        f"conversion: Label Studio task {other['data']['name']!r} answers for {real['data']['source']!r}, "
        f"but the run recorded {other['data']['name']!r} for {other['data']['source']}: "
        "its answers are not used"
    )


def test_at_a_timeout_open_tasks_leave_the_queue_and_answers_are_harvested(
    connected: LabelStudioServer, aws: Callable[[str], Any]
) -> None:
    day = "2026-03-07"
    put_day(aws, day, 2)
    step = ReviewStep(settings("label_studio"), day)
    started = step.start(step.set_up())
    answered, unanswered = day_tasks(connected, started["label_studio_project_id"], day)
    box = {"label": DEMO_CLASSES[1], "left": 5, "top": 5, "width": 40, "height": 40}
    result = percent_result(box, answered["data"]["width"], answered["data"]["height"])
    client(connected).call("POST", f"/api/tasks/{answered['id']}/annotations/", json={"result": [result]})

    waited = step.wait(started, timeout=1, on_timeout="continue")
    assert waited["timed_out"]
    assert (waited["completed"], waited["stopped_open_loops"]) == (1, 1)
    tasks = {t["id"]: t for t in day_tasks(connected, started["label_studio_project_id"], day)}
    assert tasks[unanswered["id"]]["is_labeled"]  # out of the labeling queue
    assert tasks[unanswered["id"]]["meta"] == {"stopped": "review timeout"}
    assert step.manifest()["converted"] == 1
    report = {entry["name"]: entry for entry in read_lines(aws, day, "manifest-report.jsonl")}
    assert report[unanswered["data"]["name"]]["reason"] == "task is Stopped: review timeout"


def test_the_trigger_reports_success_and_timeout(
    connected: LabelStudioServer, aws: Callable[[str], Any]
) -> None:
    day = "2026-03-08"
    records = put_day(aws, day, 1)
    step = ReviewStep(settings("label_studio"), day)
    started = step.start(step.set_up())

    def run(deadline: datetime) -> dict[str, Any]:
        trigger = LabelStudioReviewTrigger(
            label_studio_conn_id=LS_CONN,
            project_id=started["label_studio_project_id"],
            day=day,
            human_loops_uri=started["human_loops_uri"],
            required_answers=1,
            min_completed_fraction=1.0,
            deadline=deadline.isoformat(),
            poll_interval=0.2,
            aws_conn_id=AWS_CONN,
            region_name="us-east-1",
        )
        classpath, kwargs = trigger.serialize()
        assert classpath == "active_learning.triggers.label_studio.LabelStudioReviewTrigger"

        async def first_event() -> dict[str, Any]:
            async for event in LabelStudioReviewTrigger(**kwargs).run():
                return event.payload
            raise AssertionError("no event")

        return asyncio.run(first_event())

    timed_out = run(datetime.now(UTC))
    assert timed_out["status"] == "timeout"
    assert timed_out["progress"]["counts"] == {"InProgress": 1}
    (task,) = day_tasks(connected, started["label_studio_project_id"], day)
    box = {"label": DEMO_CLASSES[0], "left": 1, "top": 1, "width": 9, "height": 9}
    result = percent_result(box, records[0]["width"], records[0]["height"])
    client(connected).call("POST", f"/api/tasks/{task['id']}/annotations/", json={"result": [result]})
    done = run(datetime.now(UTC) + timedelta(minutes=1))
    assert done["status"] == "success"
    assert done["progress"]["counts"] == {"Completed": 1}


def test_a_stopped_server_leaves_no_process_and_no_socket(tmp_path, label_studio: LabelStudioServer) -> None:
    """A second server on a copy of the session's data folder (already migrated: a quick start)."""
    import shutil

    data = tmp_path / "copy"
    shutil.copytree(label_studio.data_dir, data, ignore=shutil.ignore_patterns("*.log"))
    server = LabelStudioServer(data)
    with server:
        assert requests.get(f"{server.url}/health", timeout=10).ok
        assert server.token == label_studio.token  # the saved token of the copied folder
    assert server.leftovers() == []
