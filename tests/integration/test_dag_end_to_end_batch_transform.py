"""One day of the real DAG (``airflow dags test``) with ``predict_mode=batch_transform``, run twice:
the emulator's Batch Transform predicts, and the rerun of the finished day starts no second job."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_a_transform_day_trains_and_updates_and_its_rerun_starts_no_second_job(tmp_path: Path) -> None:
    output = tmp_path / "demo"
    command = [sys.executable, "-m", "tools.demo", "--output", str(output), "--days", "1"]
    command += ["--images-per-day", "12", "--predict-mode", "batch_transform", "--runs-per-day", "2"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=400, check=False)
    airflow_log = (output / "airflow.log").read_text() if (output / "airflow.log").exists() else ""
    assert result.returncode == 0, result.stdout + result.stderr + airflow_log[-5000:]
    _, first, rerun = json.loads((output / "summary.json").read_text())
    assert first["predicted_by"] == "active-learning-bt-20261123"  # one job, no endpoint call
    assert first["images"] == 12
    assert 0 < first["reviewed"] < 12
    assert first["loops_completed"] == first["manifest_lines"] == first["reviewed"]
    assert first["training_job"] != "skipped"
    assert first["endpoint_config"] != "-"
    # the rerun, after the day's update (another model serves), re-attaches to the day's job:
    # the same job, reviews, manifest and training job, and no second update
    assert rerun == first
    assert airflow_log.count("Started transform job") == 1
    assert "Transform job active-learning-bt-20261123 is Completed: re-attaching" in airflow_log
