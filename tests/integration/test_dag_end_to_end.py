"""The real active_learning DAG, run by Airflow (``airflow dags test``) for one day on the local AWS."""

from __future__ import annotations

import json

from tests.integration.conftest import EndToEndDay


def test_one_day_of_the_loop_trains_and_updates_the_endpoint(end_to_end_day: EndToEndDay) -> None:
    assert end_to_end_day.returncode == 0, end_to_end_day.stdout + end_to_end_day.airflow_log[-5000:]
    initial, day = json.loads((end_to_end_day.output / "summary.json").read_text())
    assert day["day"] == "2026-11-23"
    assert day["images"] == 30
    assert 0 < day["reviewed"] < 30
    assert day["loops_completed"] == day["reviewed"]
    assert day["manifest_lines"] == day["reviewed"]  # every reviewed scene has objects
    assert "(Completed)" in day["training_job"]
    assert day["endpoint_config"] != "-"
    # the summary's counts come from runs/2026-11-23/: the run processed the day it was given
    assert day["held_out_map"] > initial["held_out_map"]


def test_every_aws_response_of_the_day_matches_botocore_output_shapes(end_to_end_day: EndToEndDay) -> None:
    """What the emulator and moto answered the DAG (and the demo) is what AWS may answer."""
    assert end_to_end_day.returncode == 0, end_to_end_day.stdout[-3000:]
    services = {call["service"] for call in end_to_end_day.calls}
    assert {"s3", "sagemaker", "sagemaker-runtime", "sagemaker-a2i-runtime"} <= services
    broken = sorted(
        {
            f"{call['service']}:{call['operation']} {error}"
            for call in end_to_end_day.calls
            for error in call["contract_errors"]
        }
    )
    assert not broken, "\n".join(broken)
