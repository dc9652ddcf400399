"""``make experiment``: the selection strategies against random picks, at the same daily label budget.

Replays ``--days`` days of the loop on the emulator's synthetic worlds with the emulator's real
local detector: each day, the serving model predicts the day's images, the product's routing policy
and selection strategy (``active_learning.routing`` / ``active_learning.selection``, the code the
DAG runs) choose at most ``--budget`` images to review, the reference boxes of those become labels,
and the model is retrained from the previous one on every label so far (what
``IncrementalTrainingOperator`` asks of the training job). ``random`` picks ``--budget`` images of
the day uniformly, the baseline. Each day's model is scored by mAP@0.5 on held-out scenes.

Prints, per world, the held-out mAP per day (mean and spread over seeds) and labels used, and per
strategy the share of random's labels it needs to reach random's final mAP; writes
``experiment.json`` and ``experiment.png`` to ``--output``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]

from active_learning.detections import parse_prediction  # noqa: E402
from active_learning.routing import RoutingPolicy  # noqa: E402
from active_learning.selection import STRATEGIES, SelectionStrategy, uniform_draw  # noqa: E402
from world.evaluation import image_size, mean_average_precision  # noqa: E402
from world.model import LocalDetector, train  # noqa: E402
from world.scenes import EASY_WORLD, LONG_TAIL_WORLD, VOC_WORLD, World, make_scenes  # noqa: E402

WORLDS: dict[str, World] = {"4-classes": EASY_WORLD, "20-classes": VOC_WORLD, "long-tail": LONG_TAIL_WORLD}
RANDOM = "random"
INITIAL_SCENES = 4  # the weak initial model, as make demo's
Scene = tuple[bytes, list[dict[str, Any]]]


@dataclass(frozen=True)
class Plan:
    days: int
    images_per_day: int
    budget: int
    held_out: int
    threshold: float
    hybrid_share: float

    def arms(self) -> list[tuple[str, SelectionStrategy | None]]:
        """(label, strategy) of each arm; ``None`` is the random baseline."""
        arms: list[tuple[str, SelectionStrategy | None]] = [(RANDOM, None)]
        for name in STRATEGIES:
            arms.append((name, SelectionStrategy(name)))
        for name in STRATEGIES:
            label = f"{name}+{self.hybrid_share:g} random"
            arms.append((label, SelectionStrategy(name, self.hybrid_share)))
        return arms


def held_out_map(model: LocalDetector, held_out: list[Scene], sizes: list[tuple[int, int]]) -> float:
    return mean_average_precision(
        [model.predict(image) for image, _ in held_out],
        [boxes for _, boxes in held_out],
        len(model.classes),
        sizes=sizes,
    )


def choose(plan: Plan, strategy: SelectionStrategy | None, day: str, model: LocalDetector,
           images: list[Scene], counts: Counter[int]) -> list[int]:  # fmt: skip
    """Indexes of the day's images sent to review."""
    keys = [f"{day}/scene-{index:04d}.jpg" for index in range(len(images))]
    if strategy is None:  # random: the day's budget, uniformly among all its images
        order = sorted(range(len(images)), key=lambda index: uniform_draw(day, keys[index], "baseline"))
        return order[: plan.budget]
    policy = RoutingPolicy(plan.threshold, plan.budget, 0.0, strategy)
    detections = {
        key: parse_prediction(model.predict(image)) for key, (image, _) in zip(keys, images, strict=True)
    }
    decisions = {key: policy.decide(found) for key, found in detections.items()}
    final = policy.decide_day(decisions, day, detections, counts)
    return [index for index, key in enumerate(keys) if final[key].review]


def replay(job: tuple[str, int, Plan]) -> dict[str, Any]:
    """Every arm on one world and seed: the same initial model, days and held-out scenes for each."""
    world_name, seed, plan = job
    world = WORLDS[world_name]
    classes = list(world.classes)
    base = 10_000 * seed
    held_out = make_scenes(base + 999, plan.held_out, world)
    sizes = [image_size(image) for image, _ in held_out]
    initial = train(None, make_scenes(base + 1, INITIAL_SCENES, world), classes)
    days = [make_scenes(base + 100 + day, plan.images_per_day, world) for day in range(plan.days)]
    initial_map = held_out_map(initial, held_out, sizes)
    curves: dict[str, dict[str, list[float]]] = {}
    for label, strategy in plan.arms():
        model, labelled, counts = initial, [], Counter()
        maps, labels = [initial_map], [0]
        for day, images in enumerate(days):
            picked = choose(plan, strategy, f"day-{day + 1:02d}", model, images, counts)
            new = [images[index] for index in picked]
            labelled += new
            counts.update(box["class_id"] for _, boxes in new for box in boxes)
            if new:  # the product skips training without new labels
                model = train(model, labelled, classes)
            maps.append(held_out_map(model, held_out, sizes))
            labels.append(len(labelled))
        curves[label] = {"map": maps, "labels": labels}
    return {"world": world_name, "seed": seed, "curves": curves}


def labels_to_reach(target: float, labels: list[float], maps: list[float]) -> float | None:
    """Labels at which a (mean) curve first reaches ``target``, linearly between days; None if never."""
    if maps[0] >= target:
        return labels[0]
    for day in range(1, len(maps)):
        if maps[day] >= target:
            share = (target - maps[day - 1]) / (maps[day] - maps[day - 1])
            return labels[day - 1] + share * (labels[day] - labels[day - 1])
    return None


def summarize(runs: list[dict[str, Any]], plan: Plan) -> dict[str, Any]:
    worlds: dict[str, Any] = {}
    for world_name in WORLDS:
        mine = [run for run in runs if run["world"] == world_name]
        if not mine:
            continue
        arms: dict[str, Any] = {}
        for label, _ in plan.arms():
            maps = np.array([run["curves"][label]["map"] for run in mine])
            labels = np.array([run["curves"][label]["labels"] for run in mine], dtype=np.float64)
            arms[label] = {
                "map_mean": maps.mean(axis=0).round(4).tolist(),
                "map_std": maps.std(axis=0).round(4).tolist(),
                "labels_mean": labels.mean(axis=0).round(2).tolist(),
            }
        baseline = arms[RANDOM]
        target, random_labels = baseline["map_mean"][-1], baseline["labels_mean"][-1]
        for arm in arms.values():
            needed = labels_to_reach(target, arm["labels_mean"], arm["map_mean"])
            arm["labels_to_random_final"] = None if needed is None else round(needed, 2)
            arm["share_of_random_labels"] = None if needed is None else round(needed / random_labels, 3)
            worse = [
                day
                for day, (mean, base_mean, std, base_std) in enumerate(
                    zip(
                        arm["map_mean"],
                        baseline["map_mean"],
                        arm["map_std"],
                        baseline["map_std"],
                        strict=True,
                    )
                )
                if mean < base_mean - max(std, base_std)
            ]
            arm["days_below_random_beyond_spread"] = worse
        worlds[world_name] = {"seeds": sorted(run["seed"] for run in mine), "arms": arms}
    return worlds


def print_tables(worlds: dict[str, Any], plan: Plan) -> None:
    for world_name, result in worlds.items():
        print(f"\n## {world_name} (seeds {result['seeds']}; held-out mAP@0.5, mean ± spread over seeds)")
        header = ["strategy", "labels"] + [f"day {day}" for day in range(plan.days + 1)] + ["share"]
        rows = []
        for label, arm in result["arms"].items():
            share = arm["share_of_random_labels"]
            rows.append(
                [label, f"{arm['labels_mean'][-1]:g}"]
                + [f"{m:.3f}±{s:.3f}" for m, s in zip(arm["map_mean"], arm["map_std"], strict=True)]
                + ["baseline" if label == RANDOM else "not reached" if share is None else f"{share:.0%}"]
            )
        widths = [max(len(str(row[column])) for row in [header, *rows]) for column in range(len(header))]
        for row in [header, *rows]:
            print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))
    print(
        "\nlabels: images reviewed over all days (mean over seeds); share: the labels a strategy needs "
        "to reach random's final mean mAP, as a share of random's labels"
    )


def plot(worlds: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(worlds), figsize=(5.5 * len(worlds), 4.5), squeeze=False)
    for axis, (world_name, result) in zip(axes[0], worlds.items(), strict=True):
        for label, arm in result["arms"].items():
            mean, std = np.array(arm["map_mean"]), np.array(arm["map_std"])
            style = {"color": "black", "linewidth": 2.5} if label == RANDOM else {}
            axis.plot(arm["labels_mean"], mean, marker="o", markersize=3, label=label, **style)
            axis.fill_between(arm["labels_mean"], mean - std, mean + std, alpha=0.1, **style)
        axis.set_title(world_name)
        axis.set_xlabel("labelled images")
        axis.set_ylabel("held-out mAP@0.5")
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", type=Path, default=ROOT / "experiment-output")
    parser.add_argument("--worlds", nargs="+", choices=list(WORLDS), default=list(WORLDS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--days", type=int, default=8)
    parser.add_argument("--images-per-day", type=int, default=60)
    parser.add_argument("--budget", type=int, default=6, help="labels (reviewed images) per day")
    parser.add_argument("--held-out", type=int, default=200)
    parser.add_argument("--threshold", type=float, default=0.5, help="the routing policy's threshold")
    parser.add_argument("--hybrid-share", type=float, default=0.5, help="random share of the hybrids")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    plan = Plan(args.days, args.images_per_day, args.budget, args.held_out, args.threshold, args.hybrid_share)
    started = time.monotonic()
    jobs = [(world, seed, plan) for world in args.worlds for seed in range(1, args.seeds + 1)]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        runs = list(pool.map(replay, jobs))
    worlds = summarize(runs, plan)
    print_tables(worlds, plan)
    args.output.mkdir(parents=True, exist_ok=True)
    document = {"plan": plan.__dict__, "worlds": worlds, "runs": runs}
    (args.output / "experiment.json").write_text(json.dumps(document, indent=1))
    plot(worlds, args.output / "experiment.png")
    print(f"\ndone in {time.monotonic() - started:.0f} s; {args.output}/experiment.json and experiment.png")


if __name__ == "__main__":
    main()
