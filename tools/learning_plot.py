"""``demo-output/learning.png``: held-out mAP, routed and reviewed images per day of ``make demo``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def plot_learning(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Plot the demo's summary rows (``initial`` first, then one per day): the mAP line, and bars of
    the reviews routed by the threshold and added by budget-fill (a tick: all the threshold routed)."""
    import matplotlib  # imported here: only the demo draws, the emulator's server never does

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = [str(row["day"]) for row in rows]
    maps = [float(row["held_out_map"]) for row in rows]

    def count(row: dict[str, Any], key: str) -> int:
        return 0 if row[key] == "-" else int(row[key])

    filled = [count(row, "budget_filled") for row in rows]
    by_threshold = [count(row, "reviewed") - extra for row, extra in zip(rows, filled, strict=True)]
    routed = [count(row, "routed") for row in rows]
    figure, map_axis = plt.subplots(figsize=(8, 4.5))
    label_axis = map_axis.twinx()
    label_axis.bar(
        days, by_threshold, color="tab:grey", alpha=0.45, label="reviewed: routed by the threshold"
    )
    label_axis.bar(
        days, filled, bottom=by_threshold, color="tab:orange", alpha=0.45, label="reviewed: budget-fill"
    )
    label_axis.plot(
        days, routed, color="tab:grey", linestyle="none", marker="_", markersize=14, label="routed"
    )
    label_axis.set_ylabel("images of the day")
    label_axis.set_ylim(0, max([*routed, 1]) * 1.35)  # room for the legend above the ticks
    label_axis.legend(loc="upper right", fontsize=8)
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
