"""``make experiment``: the selection strategies against random picks, at equal cost.

Replays ``--days`` days of the loop on the emulator's synthetic worlds with the emulator's real
local detector: each day, the serving model predicts the day's images, the product's routing policy
and selection strategy (``active_learning.routing`` / ``active_learning.selection``, the code the
DAG runs) choose at most ``--budget`` images to review, the reference boxes of those become labels,
and the model is retrained from the previous one on every label so far, each label counted once
(what ``IncrementalTrainingOperator`` asks of the training job). Each day's model is scored by
mAP@0.5 on held-out scenes.

Two baselines, paired by seed (the same initial model, days and held-out scenes):

- ``random``: ``--budget`` images of the day drawn uniformly: random **at the same number of days**;
- for each arm, random drawn from the same images **given the same number of labels each day** as
  the arm used (an arm that leaves budget unspent is compared with a random that spends as little).

Prints, per world, each arm's labels, routed, budget-filled and unspent labels, its last day's mAP,
and its paired difference from both baselines (mean and spread over seeds, and whether the mean
exceeds the spread); writes ``experiment.json`` (every day of every seed) and ``experiment.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]

from active_learning.detections import parse_prediction  # noqa: E402
from active_learning.routing import REASON_BUDGET_FILL, RoutingPolicy  # noqa: E402
from active_learning.selection import BOX_UNCERTAINTY, STRATEGIES, SelectionStrategy, uniform_draw  # noqa: E402
from world.evaluation import box_iou, image_size, mean_average_precision  # noqa: E402
from world.model import LocalDetector, train  # noqa: E402
from world.scenes import DEMO_CLASSES, HUE_SPREAD, VOC_CLASSES, World, long_tail, make_scenes  # noqa: E402

RANDOM = "random"
SEED_ROUTING = "threshold only"  # the seed's routing: no budget fill
CALIBRATED = "calibrated threshold"
# Ground Truth's automated labeling trusts a score once it is right this often on a validation set.
CALIBRATION_PRECISION = 0.95
CALIBRATION_SCENES = 50
Scene = tuple[bytes, list[dict[str, Any]]]


@dataclass(frozen=True)
class Plan:
    days: int
    images_per_day: int
    budget: int
    held_out: int
    threshold: float
    initial_scenes: int

    def arms(self) -> list[tuple[str, SelectionStrategy, bool]]:
        """(label, strategy, fill the budget) of each arm besides random: every strategy as the
        product runs it (budget fill on), the default strategy with the seed's routing, and the
        default strategy with budget fill and a threshold calibrated each day on a validation set."""
        arms = [(name, SelectionStrategy(name), True) for name in STRATEGIES]
        default = SelectionStrategy(BOX_UNCERTAINTY)
        arms.append((f"{BOX_UNCERTAINTY}, {SEED_ROUTING}", default, False))
        arms.append((f"{BOX_UNCERTAINTY}, {CALIBRATED}", default, True))
        return arms


def make_worlds(tail_exponent: float, hue_spread: float | None) -> dict[str, World]:
    """The three worlds; ``hue_spread`` (None: each world's own) applies to the two hard ones."""
    return {
        "4-classes": World(DEMO_CLASSES),
        "20-classes": World(VOC_CLASSES, hue_spread=HUE_SPREAD if hue_spread is None else hue_spread),
        "long-tail": World(
            VOC_CLASSES,
            long_tail(len(VOC_CLASSES), tail_exponent),
            hue_spread=0.35 if hue_spread is None else hue_spread,
        ),
    }


def held_out_map(model: LocalDetector, held_out: list[Scene], sizes: list[tuple[int, int]]) -> float:
    return mean_average_precision(
        [model.predict(image) for image, _ in held_out],
        [boxes for _, boxes in held_out],
        len(model.classes),
        sizes=sizes,
    )


def scene_keys(day: str, count: int) -> list[str]:
    return [f"{day}/scene-{index:04d}.jpg" for index in range(count)]


def random_picks(day: str, count: int, labels: int) -> list[int]:
    """``labels`` of the day's images drawn uniformly (a prefix of one fixed order per day, so fewer
    labels pick a subset of more)."""
    keys = scene_keys(day, count)
    order = sorted(range(count), key=lambda index: uniform_draw(day, keys[index], "baseline"))
    return order[:labels]


def calibrated_threshold(
    model: LocalDetector, validation: list[Scene], sizes: list[tuple[int, int]]
) -> float:
    """The lowest score above which the model's detections on ``validation`` are right (class and
    IoU >= 0.5 with a reference box) at least :data:`CALIBRATION_PRECISION` of the time; 1.0 when
    no score is (everything is routed)."""
    outcomes: list[tuple[float, bool]] = []
    for (image, references), (width, height) in zip(validation, sizes, strict=True):
        boxes = np.array(
            [[r["left"], r["top"], r["left"] + r["width"], r["top"] + r["height"]] for r in references]
        ).reshape(-1, 4)
        classes = [int(r["class_id"]) for r in references]
        for class_id, score, *corners in model.predict(image)["prediction"]:
            box = np.array(corners) * [width, height, width, height]
            same = [index for index, reference in enumerate(classes) if reference == int(class_id)]
            right = bool(same) and float(box_iou(box, boxes[same]).max()) >= 0.5
            outcomes.append((score, right))
    outcomes.sort(reverse=True)
    threshold, right_so_far = 1.0, 0
    for count, (score, right) in enumerate(outcomes, start=1):
        right_so_far += right
        if right_so_far / count >= CALIBRATION_PRECISION:
            threshold = score
    return threshold


def choose(plan: Plan, strategy: SelectionStrategy, fill: bool, day: str, model: LocalDetector,
           images: list[Scene], counts: Counter[int],
           threshold: float | None = None) -> tuple[list[int], int, int]:  # fmt: skip
    """Indexes of the day's images sent to review, how many the threshold routed, how many filled."""
    keys = scene_keys(day, len(images))
    policy = RoutingPolicy(
        plan.threshold if threshold is None else threshold, plan.budget, 0.0, strategy, fill
    )
    detections = {
        key: parse_prediction(model.predict(image)) for key, (image, _) in zip(keys, images, strict=True)
    }
    decisions = {key: policy.decide(found) for key, found in detections.items()}
    final = policy.decide_day(decisions, day, detections, counts)
    picked = [index for index, key in enumerate(keys) if final[key].review]
    filled = sum(final[key].reason == REASON_BUDGET_FILL for key in keys)
    return picked, sum(decision.review for decision in decisions.values()), filled


def run_days(model: LocalDetector, days: list[list[Scene]], pick: Any, score: Any) -> dict[str, list]:
    """One arm over the days: ``pick(day number, day key, model, images, counts)`` returns
    (indexes, routed, filled); the model retrains on every label so far when the day added some."""
    classes = list(model.classes)
    labelled: list[Scene] = []
    counts: Counter[int] = Counter()
    curve: dict[str, list] = {"map": [score(model)], "labels": [0], "routed": [], "filled": []}
    for number, images in enumerate(days):
        picked, routed, filled = pick(number, f"day-{number + 1:02d}", model, images, counts)
        new = [images[index] for index in picked]
        labelled += new
        counts.update(box["class_id"] for _, boxes in new for box in boxes)
        if new:  # the product skips training without new labels
            model = train(model, labelled, classes)
        curve["map"].append(score(model))
        curve["labels"].append(len(labelled))
        curve["routed"].append(routed)
        curve["filled"].append(filled)
    return curve


def replay(job: tuple[str, World, int, Plan]) -> dict[str, Any]:
    """Every arm and its baselines on one world and seed: the same initial model, days and held-out
    scenes for each."""
    world_name, world, seed, plan = job
    classes = list(world.classes)
    base = 10_000 * seed
    held_out = make_scenes(base + 999, plan.held_out, world)
    sizes = [image_size(image) for image, _ in held_out]
    initial = train(None, make_scenes(base + 1, plan.initial_scenes, world), classes)
    days = [make_scenes(base + 100 + day, plan.images_per_day, world) for day in range(plan.days)]
    validation = make_scenes(base + 998, CALIBRATION_SCENES, world)
    validation_sizes = [image_size(image) for image, _ in validation]

    def score(model: LocalDetector) -> float:
        return held_out_map(model, held_out, sizes)

    def random_arm(per_day: list[int]) -> dict[str, list]:
        return run_days(
            initial,
            days,
            lambda number, day, model, images, counts: (
                random_picks(day, len(images), per_day[number]),
                0,
                0,
            ),
            score,
        )

    curves: dict[str, dict[str, list]] = {RANDOM: random_arm([plan.budget] * plan.days)}
    matched: dict[tuple[int, ...], dict[str, list]] = {(plan.budget,) * plan.days: curves[RANDOM]}
    for label, strategy, fill in plan.arms():
        calibrate = label.endswith(CALIBRATED)
        curve = run_days(
            initial,
            days,
            lambda number, day, model, images, counts, s=strategy, f=fill, c=calibrate: choose(
                plan,
                s,
                f,
                day,
                model,
                images,
                counts,
                calibrated_threshold(model, validation, validation_sizes) if c else None,
            ),
            score,
        )
        per_day = tuple(int(b - a) for a, b in zip(curve["labels"], curve["labels"][1:], strict=False))
        if per_day not in matched:  # random at the same labels each day (memoized: often the budget)
            matched[per_day] = random_arm(list(per_day))
        curve["matched_random_map"] = matched[per_day]["map"]
        curves[label] = curve
    return {"world": world_name, "seed": seed, "curves": curves}


def paired(differences: np.ndarray) -> dict[str, Any]:
    """Mean and spread (standard deviation over seeds) of paired differences, per day."""
    mean, spread = differences.mean(axis=0), differences.std(axis=0)
    verdicts = [
        "ahead" if m - s > 0 else "behind" if m + s < 0 else "within"
        for m, s in zip(mean, spread, strict=True)
    ]
    return {"mean": mean.round(4).tolist(), "spread": spread.round(4).tolist(), "verdict": verdicts}


def summarize(runs: list[dict[str, Any]], plan: Plan) -> dict[str, Any]:
    worlds: dict[str, Any] = {}
    for world_name in dict.fromkeys(run["world"] for run in runs):
        mine = [run for run in runs if run["world"] == world_name]
        random_maps = np.array([run["curves"][RANDOM]["map"] for run in mine])
        arms: dict[str, Any] = {
            RANDOM: {
                "map_mean": random_maps.mean(axis=0).round(4).tolist(),
                "map_std": random_maps.std(axis=0).round(4).tolist(),
                "labels_mean": [float(plan.budget * day) for day in range(plan.days + 1)],
            }
        }
        for label, _, _ in plan.arms():
            maps = np.array([run["curves"][label]["map"] for run in mine])
            labels = np.array([run["curves"][label]["labels"] for run in mine], dtype=np.float64)
            per_day = np.diff(labels, axis=1)
            matched = np.array([run["curves"][label]["matched_random_map"] for run in mine])
            arms[label] = {
                "map_mean": maps.mean(axis=0).round(4).tolist(),
                "map_std": maps.std(axis=0).round(4).tolist(),
                "labels_mean": labels.mean(axis=0).round(2).tolist(),
                "routed_mean": np.mean([run["curves"][label]["routed"] for run in mine], axis=0)
                .round(2)
                .tolist(),
                "filled_mean": np.mean([run["curves"][label]["filled"] for run in mine], axis=0)
                .round(2)
                .tolist(),
                "unspent_mean": (plan.budget - per_day).mean(axis=0).round(2).tolist(),
                "vs_random_same_labels": paired(maps - matched),
                "vs_random_same_days": paired(maps - random_maps),
            }
        worlds[world_name] = {"seeds": sorted(run["seed"] for run in mine), "arms": arms}
    return worlds


def describe(comparison: dict[str, Any]) -> str:
    last = -1
    ahead = sum(verdict == "ahead" for verdict in comparison["verdict"][1:])
    behind = sum(verdict == "behind" for verdict in comparison["verdict"][1:])
    return (
        f"{comparison['mean'][last]:+.3f}±{comparison['spread'][last]:.3f} {comparison['verdict'][last]}"
        f" (days ahead/behind: {ahead}/{behind})"
    )


def print_tables(worlds: dict[str, Any], plan: Plan) -> None:
    for world_name, result in worlds.items():
        print(
            f"\n## {world_name} (seeds {result['seeds']}; held-out mAP@0.5 on day {plan.days}, mean ± spread "
            "over seeds; differences paired by seed)"
        )
        header = ["arm", "labels", "unspent", "filled", f"day-{plan.days} mAP", "vs random, same labels",
                  "vs random, same days"]  # fmt: skip
        rows = []
        for label, arm in result["arms"].items():
            if label == RANDOM:
                final = f"{arm['map_mean'][-1]:.3f}±{arm['map_std'][-1]:.3f}"
                rows.append([label, f"{arm['labels_mean'][-1]:g}", "0", "-", final, "-", "baseline"])
                continue
            rows.append(
                [
                    label,
                    f"{arm['labels_mean'][-1]:g}",
                    f"{sum(arm['unspent_mean']):g}",
                    f"{sum(arm['filled_mean']):g}",
                    f"{arm['map_mean'][-1]:.3f}±{arm['map_std'][-1]:.3f}",
                    describe(arm["vs_random_same_labels"]),
                    describe(arm["vs_random_same_days"]),
                ]
            )
        widths = [max(len(str(row[column])) for row in [header, *rows]) for column in range(len(header))]
        for row in [header, *rows]:
            print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))
        for label, arm in result["arms"].items():
            if label != RANDOM:
                print(
                    f"  {label}: routed per day {arm['routed_mean']}, unspent per day {arm['unspent_mean']}"
                )
    print(
        "\nlabels: images reviewed over all days (mean over seeds); unspent: budget left over all days; "
        "filled: reviews that budget-fill added. A paired difference is 'ahead' or 'behind' when its mean "
        "exceeds its spread (standard deviation over seeds), else 'within'; days counted from day 1."
    )


def plot(worlds: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, len(worlds), figsize=(5.5 * len(worlds), 8), squeeze=False)
    for column, (world_name, result) in enumerate(worlds.items()):
        top, bottom = axes[0][column], axes[1][column]
        for label, arm in result["arms"].items():
            days = np.arange(len(arm["map_mean"]))
            mean, std = np.array(arm["map_mean"]), np.array(arm["map_std"])
            style = {"color": "black", "linewidth": 2.5} if label == RANDOM else {}
            top.plot(days, mean, marker="o", markersize=3, label=label, **style)
            top.fill_between(days, mean - std, mean + std, alpha=0.1, **style)
            if label != RANDOM:
                same = arm["vs_random_same_labels"]
                diff, spread = np.array(same["mean"]), np.array(same["spread"])
                bottom.plot(days, diff, marker="o", markersize=3, label=label)
                bottom.fill_between(days, diff - spread, diff + spread, alpha=0.1)
        bottom.axhline(0, color="black", linewidth=1)
        top.set_title(world_name)
        top.set_ylabel("held-out mAP@0.5")
        bottom.set_ylabel("mAP minus random at the same labels")
        for axis in (top, bottom):
            axis.set_xlabel("day")
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
    parser.add_argument("--worlds", nargs="+", choices=["4-classes", "20-classes", "long-tail"],
                        default=["4-classes", "20-classes", "long-tail"])  # fmt: skip
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--days", type=int, default=8)
    parser.add_argument("--images-per-day", type=int, default=60)
    parser.add_argument("--budget", type=int, default=6, help="labels (reviewed images) per day")
    parser.add_argument("--held-out", type=int, default=200)
    parser.add_argument("--threshold", type=float, default=0.5, help="the routing policy's threshold")
    parser.add_argument("--initial-scenes", type=int, default=4, help="scenes of the weak initial model")
    parser.add_argument(
        "--tail-exponent", type=float, default=1.2, help="the long-tailed world's Zipf exponent"
    )
    parser.add_argument("--hue-spread", type=float, default=None,
                        help="hue spread of the two 20-class worlds (default: 0.25 and 0.35)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    plan = Plan(
        args.days, args.images_per_day, args.budget, args.held_out, args.threshold, args.initial_scenes
    )
    worlds = make_worlds(args.tail_exponent, args.hue_spread)
    started = time.monotonic()
    jobs = [(name, worlds[name], seed, plan) for name in args.worlds for seed in range(1, args.seeds + 1)]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        runs = list(pool.map(replay, jobs))
    summary = summarize(runs, plan)
    print_tables(summary, plan)
    args.output.mkdir(parents=True, exist_ok=True)
    options = {key: value for key, value in vars(args).items() if key not in ("output", "workers")}
    document = {"plan": asdict(plan), "options": options, "worlds": summary, "runs": runs}
    (args.output / "experiment.json").write_text(json.dumps(document, indent=1))
    plot(summary, args.output / "experiment.png")
    print(f"\ndone in {time.monotonic() - started:.0f} s; {args.output}/experiment.json and experiment.png")


if __name__ == "__main__":
    main()
