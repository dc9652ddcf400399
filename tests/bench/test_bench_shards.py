"""The shards bench runs the day with 1, 2 and 4 shards and reports each from one run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_a_small_day_with_each_shard_count_predicts_every_image(tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "bench" / "bench_shards.py"), "--images", "300"]
    command += ["--latency", "0.01", "--rounds", "1", "--output", str(tmp_path)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)

    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "shards.json").read_text())
    assert [row["shards"] for row in report["rows"]] == [1, 2, 4]
    assert all(row["images"] == 300 for row in report["rows"])
    assert report["rows"][0]["ratio_to_one_shard"] == 1.0
    assert all(row["route_seconds"] > 0 for row in report["rows"][1:])
    assert "2 shard(s), 300 images" in result.stdout
