"""The real active_learning DAG, run by Airflow (``airflow dags test``) for one day on the local AWS."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_one_day_of_the_loop_trains_and_updates_the_endpoint(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "emulator.demo",
            "--output",
            str(tmp_path),
            "--days",
            "1",
            "--images-per-day",
            "30",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=480,
        check=False,
    )
    log = (tmp_path / "airflow.log").read_text() if (tmp_path / "airflow.log").exists() else ""
    assert result.returncode == 0, result.stdout + result.stderr + log[-5000:]
    initial, day = json.loads((tmp_path / "summary.json").read_text())
    assert day["day"] == "2026-11-23"
    assert day["images"] == 30
    assert 0 < day["routed"] < 30
    assert day["loops_completed"] == day["routed"]
    assert day["manifest_lines"] == day["routed"]  # every reviewed scene has objects
    assert "(Completed)" in day["training_job"]
    assert day["endpoint_config"] != "-"
    # the summary's counts come from runs/2026-11-23/: the run processed the day it was given
    assert day["held_out_map"] > initial["held_out_map"]
