"""make demo's learning.png is drawn from its summary rows."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from tools.learning_plot import plot_learning


def test_the_plot_is_a_png_of_the_days(tmp_path: Path) -> None:
    rows = [
        {"day": "initial", "routed": "-", "budget_filled": "-", "reviewed": "-", "held_out_map": 0.189},
        {"day": "2026-11-23", "routed": 8, "budget_filled": 0, "reviewed": 8, "held_out_map": 0.261},
        {"day": "2026-11-24", "routed": 2, "budget_filled": 6, "reviewed": 8, "held_out_map": 0.3},
    ]
    plot_learning(rows, tmp_path / "learning.png")
    with Image.open(tmp_path / "learning.png") as image:
        assert image.format == "PNG"
        assert image.width > 400
        assert image.height > 300
