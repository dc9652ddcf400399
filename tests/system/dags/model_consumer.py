"""A DAG of someone else's: runs each time the active-learning loop puts a new model on the endpoint."""

from __future__ import annotations

import os
from typing import Any

import pendulum
from airflow.sdk import DAG, task

from active_learning.assets import serving_model_asset

with DAG(
    dag_id="model_consumer",
    schedule=serving_model_asset(os.environ.get("AL_ENDPOINT_NAME", "active-learning-od")),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["system-test"],
):

    @task
    def new_model(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        """The models that triggered this run, as the loop described them."""
        return [dict(event.extra) for events in triggering_asset_events.values() for event in events]

    new_model()
