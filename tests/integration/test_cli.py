"""The emulator's command line starts a server in the background and stops it, leaving nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).parents[2]


def emulator(*args: str, cwd: Path) -> str:
    return subprocess.run(
        [sys.executable, "-m", "emulator", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
        timeout=90,
    ).stdout.strip()


def test_start_serves_on_loopback_and_stop_ends_the_process(tmp_path: Path) -> None:
    state = tmp_path / "emulator.json"
    url = emulator("start", "--state-file", str(state), "--log-file", str(tmp_path / "log"), cwd=tmp_path)
    assert url.startswith("http://127.0.0.1:")
    pid = json.loads(state.read_text())["pid"]
    with urllib.request.urlopen(f"{url}/_emulator/health", timeout=10) as response:
        assert json.loads(response.read()) == {"status": "ok"}
    assert json.loads(emulator("pending", "--state-file", str(state), cwd=tmp_path)) == {"pending": []}
    assert emulator("stop", "--state-file", str(state), cwd=tmp_path) == f"emulator {pid} stopped"
    assert not state.exists()
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
