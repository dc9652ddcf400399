"""make bench's parse measure runs and writes its figures (the figures themselves are the bench's)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import bench_parse


def test_the_parse_measure_writes_both_medians_and_the_difference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench_parse.main(["--runs", "1", "--output", str(tmp_path)]) == 0

    result = json.loads((tmp_path / "parse.json").read_text())
    assert set(result["median_ms"]) == {"empty", "active_learning", "loops_1", "loops_4"}
    # each figure is rounded on its own: the difference of the rounded medians is off by up to 0.1
    assert result["extra_ms"] == pytest.approx(
        result["median_ms"]["active_learning"] - result["median_ms"]["empty"], abs=0.11
    )
    assert result["median_ms"]["active_learning"] > 0
    # the cost of each loop past the first: 4 loops against 1
    assert result["per_extra_loop_ms"] == pytest.approx(
        (result["median_ms"]["loops_4"] - result["median_ms"]["loops_1"]) / 3, abs=0.11
    )
    assert "DAG parse, median of 1 fresh processes" in capsys.readouterr().out
