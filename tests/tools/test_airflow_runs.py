"""make demo's runner: a day that no task can advance fails fast instead of waiting forever."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tools.airflow_runs import run

# What `airflow dags test` prints, every second, while nothing it can run advances the day.
BLOCKED = """
import time
while True:
    print("WARNING No tasks to run. unrunnable tasks: {incremental_training}", flush=True)
    time.sleep(0.1)
"""
# A retry waiting out its delay says the same for a while, then a task runs and the day ends.
RETRYING = """
import time
for _ in range(5):
    print("WARNING No tasks to run.", flush=True)
    time.sleep(0.1)
print("INFO task ran", flush=True)
"""


def test_a_blocked_day_fails_fast_naming_its_log(tmp_path: Path) -> None:
    log = tmp_path / "airflow.log"
    with pytest.raises(SystemExit, match="no task could run for 1 s") as raised:
        run([sys.executable, "-c", BLOCKED], {}, log, blocked_after=1.0)
    assert str(log) in str(raised.value)


def test_a_short_wait_for_a_retry_is_not_a_block(tmp_path: Path) -> None:
    log = tmp_path / "airflow.log"
    run([sys.executable, "-c", RETRYING], {}, log, blocked_after=2.0)
    assert log.read_text().endswith("INFO task ran\n")


def test_a_failing_command_fails_the_demo(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"failed \(3\)"):
        run([sys.executable, "-c", "raise SystemExit(3)"], {}, tmp_path / "airflow.log")
