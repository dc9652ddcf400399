"""A loop's last steps, for the Learning page's api-server test: its review wait and its day record.

``day_summary`` returns the record the test put in ``LEARNING_RECORDS`` (JSON, by day) for the
run's logical date, and puts it on its Asset event's extra as the loop's day record is.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pendulum
from airflow.sdk import DAG, Asset, task

MANIFEST = Asset(name="learning_fixture.manifest", uri="s3://fixture-bucket/runs/")

with DAG(dag_id="learning_fixture", schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False):

    @task(task_id="wait_for_human_loops")
    def wait() -> None:
        """Stands for the loop's review wait: the test sets its state and start."""

    @task(task_id="day_summary", outlets=[MANIFEST])
    def day_summary(**context: Any) -> dict[str, Any]:
        day = context["logical_date"].date().isoformat()
        record = {**json.loads(os.environ["LEARNING_RECORDS"])[day], "run_id": context["run_id"]}
        context["outlet_events"][MANIFEST].extra["summary"] = record
        return record

    wait() >> day_summary()
