"""make demo's process: SIGTERM (and Ctrl-C) stop everything it started, Label Studio included."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).parents[2]
pytestmark = pytest.mark.integration


def descendants(process: subprocess.Popen[bytes]) -> list[psutil.Process]:
    try:
        return psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_stopping_the_demo_mid_day_leaves_no_process(tmp_path: Path, stop: signal.Signals) -> None:
    """Issue 16.6: stopping the demo with SIGTERM left Label Studio and `airflow dags test` running."""
    output = tmp_path / "demo"
    log = tmp_path / "demo.log"
    command = [sys.executable, "-m", "tools.demo", "--output", str(output), "--days", "1"]
    command += ["--images-per-day", "4", "--review-backend", "label_studio"]
    with log.open("wb") as out:
        demo = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while b"running active_learning for" not in log.read_bytes():  # Label Studio is up by then
            assert demo.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        time.sleep(3)  # airflow dags test is running its first tasks
        started = descendants(demo)
        assert any("label" in " ".join(p.cmdline()).lower() for p in started if p.is_running())

        demo.send_signal(stop)
        demo.wait(timeout=120)

        left = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert left == [], [p.cmdline() for p in left]
    finally:
        for child in descendants(demo):
            child.kill()
        demo.kill()
