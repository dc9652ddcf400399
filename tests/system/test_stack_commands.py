"""``make airflow`` stopped with Ctrl-C leaves nothing behind (``make airflow-stop`` is the
session stack's teardown, checked the same way in conftest.py)."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.system.helpers import leftovers, start_stack


def test_ctrl_c_stops_every_process_and_socket(tmp_path: Path) -> None:
    stack = start_stack(tmp_path / "airflow")
    try:
        assert stack.api.healthy()
        running = " ".join(leftovers(stack))
        # the check sees every component and both ports while they run
        for part in ("api_server", "scheduler", "dag-processor", "triggerer", "emulator", "listening"):
            assert part in running, part
        assert running.count("listening") >= 2
    finally:
        stack.process.send_signal(signal.SIGINT)  # what Ctrl-C sends make's foreground process
        returncode = stack.process.wait(timeout=120)
    assert returncode == 0
    assert leftovers(stack) == []
    assert not (stack.home / "stack.json").exists()
