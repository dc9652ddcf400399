"""``demo-output/learning.png``: held-out mAP and labels per day of ``make demo``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def plot_learning(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Plot the demo's summary rows (``initial`` first, then one per day): mAP line, labels bars."""
    import matplotlib  # imported here: only the demo draws, the emulator's server never does

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = [str(row["day"]) for row in rows]
    maps = [float(row["held_out_map"]) for row in rows]
    labels = [0 if row["manifest_lines"] == "-" else int(row["manifest_lines"]) for row in rows]
    figure, map_axis = plt.subplots(figsize=(8, 4.5))
    label_axis = map_axis.twinx()
    label_axis.bar(days, labels, color="tab:grey", alpha=0.35, label="labels that day")
    label_axis.set_ylabel("labelled images that day")
    map_axis.plot(days, maps, color="tab:blue", marker="o", linewidth=2, label="held-out mAP@0.5")
    for day, value in zip(days, maps, strict=True):
        map_axis.annotate(
            f"{value:.3f}", (day, value), textcoords="offset points", xytext=(0, 6), ha="center"
        )
    map_axis.set_ylabel("held-out mAP@0.5 of the serving model")
    map_axis.set_ylim(0, 1)
    map_axis.set_zorder(label_axis.get_zorder() + 1)
    map_axis.patch.set_visible(False)
    map_axis.set_title("make demo: the model the endpoint serves, day by day")
    map_axis.tick_params(axis="x", labelrotation=30)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
