"""The synthetic worlds: difficulty knobs in one World, and a demo world a weak model does not solve."""

from __future__ import annotations

from collections import Counter

import pytest

from world.evaluation import image_size, mean_average_precision
from world.model import train
from world.scenes import (
    DEMO_CLASSES,
    DEMO_WORLD,
    EASY_WORLD,
    VOC_CLASSES,
    World,
    long_tail,
    make_scenes,
)


def test_class_names_alone_are_the_easy_uniform_world() -> None:
    assert make_scenes(7, 5, DEMO_CLASSES) == make_scenes(7, 5, EASY_WORLD)


def test_a_long_tail_mix_has_common_and_rare_classes_spread_over_the_wheel() -> None:
    weights = long_tail(20)
    assert sum(weights) == pytest.approx(1.0)
    ranked = sorted(weights, reverse=True)
    assert ranked[0] / ranked[-1] > 20  # the commonest class is over 20 times as common as the rarest
    rarest = sorted(range(20), key=weights.__getitem__)[:5]
    assert max(rarest) - min(rarest) > 5  # the rare classes are not neighbours on the colour wheel


def test_the_demo_world_draws_its_classes_by_their_weights() -> None:
    assert DEMO_WORLD.classes == VOC_CLASSES
    seen = Counter(box["label"] for _, boxes in make_scenes(3, 400, DEMO_WORLD) for box in boxes)
    weights = dict(zip(VOC_CLASSES, DEMO_WORLD.class_weights or (), strict=True))
    commonest, rarest = max(weights, key=weights.get), min(weights, key=weights.get)
    assert seen[commonest] > 5 * max(seen[rarest], 1)


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"classes": ()}, "classes"),
        ({"class_weights": (1.0,)}, "class_weights"),
        ({"class_weights": (0, 0, 0, 0)}, "class_weights"),
        ({"hue_spread": -0.1}, "hue_spread"),
    ],
)
def test_a_bad_world_is_refused(kwargs: dict, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        World(**kwargs)


def held_out_map(world: World, model_scenes: int) -> float:
    held_out = make_scenes(999, 100, world)
    model = train(None, make_scenes(1, model_scenes, world), world.classes)
    return mean_average_precision(
        [model.predict(image) for image, _ in held_out],
        [boxes for _, boxes in held_out],
        len(world.classes),
        sizes=[image_size(image) for image, _ in held_out],
    )


def test_a_dozen_labelled_scenes_solve_the_easy_world_not_the_demo_world() -> None:
    assert held_out_map(EASY_WORLD, 12) > 0.9
    assert held_out_map(DEMO_WORLD, 12) < 0.5
