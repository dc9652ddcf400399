"""One day of the real DAG (``airflow dags test``) with ``review_backend=label_studio``: a real
Label Studio server reviews (a scripted annotator answers through its API)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def test_one_day_reviewed_in_label_studio_trains_and_updates_the_endpoint(tmp_path: Path) -> None:
    output = tmp_path / "demo"
    command = [sys.executable, "-m", "tools.demo", "--output", str(output), "--days", "1"]
    command += ["--images-per-day", "12", "--review-backend", "label_studio"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=400, check=False)
    airflow_log = (output / "airflow.log").read_text() if (output / "airflow.log").exists() else ""
    assert result.returncode == 0, result.stdout + result.stderr + airflow_log[-5000:]
    _, day = json.loads((output / "summary.json").read_text())
    assert day["images"] == 12
    assert 0 < day["reviewed"] < 12
    assert day["loops_completed"] == day["reviewed"]  # answered in Label Studio
    assert day["manifest_lines"] == day["reviewed"]
    assert day["training_job"] != "skipped"
    assert day["endpoint_config"] != "-"
    assert "Label Studio project" in airflow_log
    assert "human loops: " not in airflow_log  # the A2I start did not run
    # the demo stopped its Label Studio: no process runs from its data folder
    running = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert str(output / "label-studio") not in running


@pytest.fixture(autouse=True)
def _needs_label_studio() -> None:
    if not (ROOT / ".venv-label-studio" / "bin" / "label-studio").exists():
        pytest.fail("Label Studio is not installed: run `make install`")
