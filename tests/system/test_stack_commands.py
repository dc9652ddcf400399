"""``make airflow`` stopped with Ctrl-C leaves nothing behind (``make airflow-stop`` is the
session stack's teardown, checked the same way in conftest.py), the ``require_approval`` recipe
asks a person, ``make airflow LABEL_STUDIO=1`` reviews in Label Studio, and a loops file makes a
DAG per loop."""

from __future__ import annotations

import json
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
import psutil
import pytest
import yaml
from selenium.webdriver.common.by import By

from tests.system.helpers import (
    ROOT,
    TERMINAL,
    RunningStack,
    leftovers,
    logged_in_browser,
    runs,
    start_stack,
    task_instances,
    wait_for,
)
from tools.airflow_runs import ENDPOINT
from tools.label_studio import LabelStudioClient, ScriptedAnnotator
from tools.seed import ALERT_TOPIC_ARN, BUCKET, PREFIX
from tools.stack import DAG_ID, seeded_days
from world import REFERENCE_METADATA

pytestmark = pytest.mark.stack


def test_the_approval_recipe_asks_and_ctrl_c_stops_every_process_and_socket(tmp_path: Path) -> None:
    """docs/local-stack.md's ``AL_REQUIRE_APPROVAL=true make airflow``: ``approve_update`` waits for
    a person, who approves, and the update lands; then Ctrl-C leaves nothing."""
    assert "\nAL_REQUIRE_APPROVAL=true make airflow\n" in (ROOT / "docs" / "local-stack.md").read_text()
    stack = start_stack(tmp_path / "airflow", env={"AL_REQUIRE_APPROVAL": "true"})
    try:
        assert stack.api.healthy()
        running = " ".join(leftovers(stack))
        # the check sees every component and both ports while they run
        for part in ("api_server", "scheduler", "dag-processor", "triggerer", "emulator", "listening"):
            assert part in running, part
        assert running.count("listening") >= 2
        # what `make airflow` does, for the last seeded day only (unpausing schedules no other run)
        day = seeded_days(datetime.now(UTC).date())[-1]
        stack.api.backfill(DAG_ID, day, day)
        stack.api.unpause(DAG_ID)
        (run,) = wait_for(lambda: runs(stack, DAG_ID), 60, "the backfilled run")
        run_path = f"/dags/{DAG_ID}/dagRuns/{quote(run['dag_run_id'], safe='')}"
        approval = f"{run_path}/taskInstances/approve_update/-1/hitlDetails"

        since: dict[int, float] = {}

        def asking() -> dict[str, Any] | None:
            """The question, once a try has waited 10 s: a try that pauses can still be lost within
            a second or two to Airflow's race (apache/airflow#72716, as for a deferral), and an
            answer given to it with the try."""
            tasks = task_instances(stack.api, DAG_ID, run["dag_run_id"])
            assert tasks["update_endpoint"]["state"] not in TERMINAL, "updated without asking"
            approve = tasks["approve_update"]
            if approve["state"] != "awaiting_input":  # Airflow 3.3: waiting, holding no worker slot
                since.clear()
                return None
            first_seen = since.setdefault(approve["try_number"], time.monotonic())
            return stack.api("GET", approval) if time.monotonic() - first_seen >= 10 else None

        asked = wait_for(asking, 600, "approve_update asking")
        assert asked["options"] == ["Approve", "Reject"]
        # what the Required Action page renders: a short Markdown summary, not a raw dict
        body = asked["body"]
        assert body.startswith(f"**Update the endpoint with the model trained for {day}?**"), body
        for part in ("| new | 0.", "| serving | ", "Trained on ", "reviews completed", "Estimated cost"):
            assert part in body, body
        assert f"/dags/{DAG_ID}/plugin/learning)" in body
        assert asked["response_received"] is False
        stack.api("PATCH", approval, {"chosen_options": ["Approve"]})
        done = wait_for(lambda: (now := runs(stack, DAG_ID)[0])["state"] in TERMINAL and now, 300, "the run")
        assert len(runs(stack, DAG_ID)) == 1
        assert done["state"] == "success"
        tasks = task_instances(stack.api, DAG_ID, run["dag_run_id"])
        assert tasks["update_endpoint"]["state"] == "success"
    finally:
        stack.process.send_signal(signal.SIGINT)  # what Ctrl-C sends make's foreground process
        returncode = stack.process.wait(timeout=120)
    assert returncode == 0
    assert leftovers(stack) == []
    assert not (stack.home / "stack.json").exists()


def aws_client(stack: RunningStack, service: str) -> Any:
    session = boto3.session.Session(
        aws_access_key_id="system", aws_secret_access_key="system", region_name="us-east-1"
    )
    return session.client(service, endpoint_url=stack.aws_url)


@pytest.mark.timeout(900)  # Label Studio's first start migrates its database: a minute or two
def test_label_studio_reviews_a_day_under_make_airflow(tmp_path: Path) -> None:
    """``make airflow LABEL_STUDIO=1``: Label Studio on its own port, its connection in every
    Airflow process; a seeded day's tasks open there with the model's boxes, the DAG's trigger
    waits in the triggerer for the answers, and Ctrl-C stops Label Studio with the rest."""
    stack = start_stack(tmp_path / "airflow", None, "--label-studio", "--label-studio-port", "0")
    try:
        assert stack.label_studio_url is not None
        assert stack.label_studio_url != stack.api.url
        token = (stack.home / "label-studio" / "personal-access-token").read_text().strip()
        state = json.loads((stack.home / "stack.json").read_text())
        for component in ("scheduler", "triggerer"):
            environ = psutil.Process(state["pids"][component]).environ()
            assert environ["AL_REVIEW_BACKEND"] == "label_studio"
            assert environ["AIRFLOW_CONN_LABEL_STUDIO_DEFAULT"] == (
                f"http://:{token}@{stack.label_studio_url.removeprefix('http://')}"
            )
        day = seeded_days(datetime.now(UTC).date())[0]
        stack.api.backfill(DAG_ID, day, day)
        stack.api.unpause(DAG_ID)
        client = LabelStudioClient(stack.label_studio_url, token)

        def day_run() -> dict[str, Any] | None:
            return next(iter(runs(stack, DAG_ID)), None)

        def opened() -> list[dict[str, Any]]:
            """The day's tasks, once start_human_loops has imported them all."""
            run = day_run()
            started = run and task_instances(stack.api, DAG_ID, run["dag_run_id"])["start_human_loops"]
            if not started or started["state"] != "success":
                return []
            return [task for task in client.tasks() if task["data"].get("day") == day.isoformat()]

        tasks = wait_for(opened, 300, f"the tasks of {day} in Label Studio")
        for task in tasks:
            (prediction,) = client.call("GET", f"/api/tasks/{task['id']}/")["predictions"]
            assert prediction["result"], f"task {task['id']} opened with no model box"
        annotator = ScriptedAnnotator(client, aws_client(stack, "s3"), REFERENCE_METADATA)
        annotator.start()
        try:
            run = wait_for(lambda: (run := day_run()) and run["state"] in TERMINAL and run, 600, "the run")
        finally:
            annotator.stop()
        assert run["state"] == "success", stack.log("scheduler")[-3000:]
        assert client.answered(day.isoformat()) == len(tasks)
        waited = task_instances(stack.api, DAG_ID, run["dag_run_id"])["wait_for_human_loops"]
        assert waited["try_number"] == 1
        running = " ".join(leftovers(stack))
        assert running.count("listening") >= 3  # the UI, the local AWS and Label Studio
    finally:
        stack.process.send_signal(signal.SIGINT)
        returncode = stack.process.wait(timeout=120)
    assert returncode == 0
    assert leftovers(stack) == []


def test_two_loops_from_a_loops_file_under_make_airflow(tmp_path: Path) -> None:
    """Issue 18: ``AL_LOOPS_FILE=include/loops.example.yaml make airflow``: one DAG per loop, each
    with its own data, endpoint and pool; both backfill; a failed day in one loop sends one SNS
    message, a day late past ``late_review_hours`` another (the deadline alert), each once; every
    day leaves its record; the tasks emit OpenLineage events naming each loop's own data."""
    loops = yaml.safe_load((ROOT / "include" / "loops.example.yaml").read_text())
    first, second = (entry["name"] for entry in loops["loops"])
    # the second loop's days are late after 12 s: its backfilled day (10 s checks) always is
    loops["loops"][1]["settings"]["late_review_hours"] = 12 / 3600
    loops_file = tmp_path / "loops.yaml"
    loops_file.write_text(yaml.safe_dump(loops))
    lineage = tmp_path / "openlineage.jsonl"
    stack = start_stack(
        tmp_path / "airflow",
        env={
            "AL_LOOPS_FILE": str(loops_file),
            "OPENLINEAGE__TRANSPORT__TYPE": "file",
            "OPENLINEAGE__TRANSPORT__LOG_FILE_PATH": str(lineage),
            "OPENLINEAGE__TRANSPORT__APPEND": "true",
        },
    )
    dag_ids = [f"active_learning__{first}", f"active_learning__{second}"]
    try:
        sqs, sns = aws_client(stack, "sqs"), aws_client(stack, "sns")
        queue = sqs.create_queue(QueueName="alerts")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=ALERT_TOPIC_ARN, Protocol="sqs", Endpoint=arn)
        day = seeded_days(datetime.now(UTC).date())[-1]
        for dag_id in dag_ids:
            stack.api.backfill(dag_id, day, day)
            stack.api.unpause(dag_id)
        # a day of the first loop that fails: a wrong setting in the run's conf fails every task
        failing = stack.api(
            "POST",
            f"/dags/{dag_ids[0]}/dagRuns",
            {"logical_date": None, "conf": {"validation_manifest_uri": "s3://elsewhere/validation.manifest"}},
        )

        def finished() -> dict[str, list[dict[str, Any]]] | None:
            found = {dag_id: runs(stack, dag_id) for dag_id in dag_ids}
            done = all(run["state"] in TERMINAL for dag_runs in found.values() for run in dag_runs)
            return found if done and sum(map(len, found.values())) == 3 else None

        found = wait_for(finished, 600, "the runs of both loops")
        states = {dag_id: sorted(run["state"] for run in dag_runs) for dag_id, dag_runs in found.items()}
        assert states == {dag_ids[0]: ["failed", "success"], dag_ids[1]: ["success"]}, stack.log("scheduler")[
            -3000:
        ]

        def alerts() -> list[dict[str, Any]] | None:
            received = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            for message in received.get("Messages", []):
                messages.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
            return messages if len(messages) >= 2 else None

        messages: list[dict[str, Any]] = []
        wait_for(alerts, 180, "the failed-day and late-reviews alerts")
        time.sleep(15)  # and no second message of either
        alerts()
        subjects = sorted(message["Subject"] for message in messages)
        assert subjects == [
            f"Active learning {dag_ids[0]}: a day failed",
            f"Active learning {dag_ids[1]}: reviews late",
        ], messages
        failed = next(message for message in messages if "failed" in message["Subject"])
        assert failing["dag_run_id"] in failed["Message"]
        # each loop's day left its record under its own prefix, its serving model on its own endpoint
        s3, sagemaker = aws_client(stack, "s3"), aws_client(stack, "sagemaker")
        records: dict[str, dict[str, Any]] = {}
        for dag_id, prefix, endpoint in (
            (dag_ids[0], PREFIX, ENDPOINT),
            (
                dag_ids[1],
                loops["loops"][1]["settings"]["prefix"],
                loops["loops"][1]["settings"]["endpoint_name"],
            ),
        ):
            record = json.loads(
                s3.get_object(Bucket=BUCKET, Key=f"{prefix}/runs/{day}/summary.json")["Body"].read()
            )
            records[dag_id] = record
            assert (record["loop"], record["day"], record["gate"]["decision"]) == (
                dag_id,
                day.isoformat(),
                "updated",
            )
            assert sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "InService"
        # OpenLineage: each loop's batch_predict read its own incoming/<day>/
        events = [json.loads(line) for line in lineage.read_text().splitlines() if line.strip()]
        read = {
            (event["job"]["name"], dataset["namespace"], dataset["name"].rstrip("/"))
            for event in events
            if event.get("eventType") == "COMPLETE"
            for dataset in event.get("inputs", [])
        }
        for dag_id, prefix in ((dag_ids[0], PREFIX), (dag_ids[1], loops["loops"][1]["settings"]["prefix"])):
            expected = (f"{dag_id}.batch_predict", f"s3://{BUCKET}", f"{prefix}/incoming/{day}")
            assert expected in read, sorted(read)
        # each loop's Learning page shows its own day, as its record says
        with logged_in_browser(stack) as browser:
            for dag_id, record in records.items():
                browser.get(f"{stack.api.url}/active-learning/dags/{dag_id}")
                (row,) = browser.find_elements(By.CSS_SELECTOR, "#days tbody tr")
                assert row.get_attribute("data-day") == day.isoformat()
                routed = row.find_element(By.CSS_SELECTOR, "td[data-field='routed']").get_attribute(
                    "data-value"
                )
                assert float(routed) == record["routed"]
                browser.save_screenshot(str(tmp_path / f"{dag_id}.png"))
    finally:
        stack.process.send_signal(signal.SIGINT)
        returncode = stack.process.wait(timeout=120)
    assert returncode == 0
    assert leftovers(stack) == []
