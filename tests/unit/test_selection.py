"""Selection strategies: which routed images a capped day keeps, pinned on small hand-made days."""

from __future__ import annotations

import itertools
import random

import pytest

from active_learning.detections import Detection
from active_learning.routing import REASON_OVER_BUDGET, Decision, ReviewBudget, RoutingPolicy
from active_learning.selection import (
    BOX_UNCERTAINTY,
    CLASS_BALANCE,
    LEAST_CONFIDENCE,
    STRATEGIES,
    DetectedObject,
    SelectionStrategy,
    label_counts,
    objects,
    uniform_draw,
)

Day = dict[str, list[Detection]]


def box(class_id: int, score: float, where: float = 0.1) -> Detection:
    """A detection at a box identified by ``where``: same ``where``, same object."""
    return Detection(class_id, score, where, where, where + 0.1, where + 0.1)


def kept(strategy: SelectionStrategy, day: Day, budget: int | None, counts: dict[int, int] | None = None,
         run_key: str = "2026-11-26") -> set[str]:  # fmt: skip
    policy = RoutingPolicy(max_reviews=budget, selection=strategy)
    decisions = {key: policy.decide(found) for key, found in day.items()}
    final = policy.decide_day(decisions, run_key, day, counts)
    return {key for key, decision in final.items() if decision.review}


def test_objects_pair_each_box_with_its_runner_up_class() -> None:
    found = objects([box(2, 0.3, 0.5), box(1, 0.6), box(4, 0.35), box(2, 0.1, 0.5)])
    assert found == [DetectedObject(1, 0.6, 0.35), DetectedObject(2, 0.3, 0.0)]
    assert found[0].uncertainty == pytest.approx(0.75)
    assert objects([]) == []


def test_least_confidence_is_the_seeds_rule_lowest_top_score_first() -> None:
    # the top score decides (b's is 0.45, whatever its other box); no detection comes first
    day = {"a": [box(0, 0.4)], "b": [box(0, 0.2), box(1, 0.45, 0.5)], "c": [box(0, 0.3)], "none": []}
    strategy = SelectionStrategy(LEAST_CONFIDENCE)
    assert kept(strategy, day, 2) == {"none", "c"}
    assert kept(strategy, day, 3) == {"none", "c", "a"}


def test_least_confidence_gives_what_the_budget_gave_before_strategies() -> None:
    day = {
        key: [box(0, score)] for key, score in zip("abcdef", [0.1, 0.45, 0.3, 0.3, 0.2, 0.49], strict=True)
    }
    policy = RoutingPolicy(max_reviews=3)
    decisions = {key: policy.decide(found) for key, found in day.items()}
    assert policy.decide_day(decisions, "r") == policy.decide_day(decisions, "r", day)
    assert kept(SelectionStrategy(LEAST_CONFIDENCE), day, 3) == {"a", "e", "c"}  # tie 0.3: key "c" < "d"


def test_box_uncertainty_prefers_many_unsure_objects_to_one() -> None:
    day = {
        "one-coin-flip": [box(0, 0.45), box(1, 0.4)],  # 1 - margin = 0.95
        "two-unsure": [box(0, 0.45), box(1, 0.2), box(2, 0.4, 0.5), box(3, 0.2, 0.5)],  # 0.75 + 0.8
        "one-clear": [box(0, 0.4)],  # no runner-up: 0.6
        "none": [],
    }
    strategy = SelectionStrategy(BOX_UNCERTAINTY)
    assert kept(strategy, day, 1) == {"none"}
    assert kept(strategy, day, 2) == {"none", "two-unsure"}
    assert kept(strategy, day, 3) == {"none", "two-unsure", "one-coin-flip"}


def test_class_balance_prefers_the_class_with_fewest_labels_so_far() -> None:
    day = {
        "cars": [box(6, 0.2)],
        "cat": [box(7, 0.45)],
        "car-and-cow": [box(6, 0.3), box(9, 0.4, 0.5)],  # the rarest class of the image decides
    }
    counts = {6: 40, 7: 3, 9: 1}
    strategy = SelectionStrategy(CLASS_BALANCE)
    assert kept(strategy, day, 1, counts) == {"car-and-cow"}
    assert kept(strategy, day, 2, counts) == {"car-and-cow", "cat"}
    # a class never labelled (absent from the counts) is the rarest
    assert kept(strategy, day | {"bird": [box(2, 0.48)]}, 1, counts) == {"bird"}


def test_class_balance_breaks_ties_by_box_uncertainty_then_key() -> None:
    day = {
        "sure": [box(0, 0.45)],
        "unsure": [box(0, 0.4), box(1, 0.35)],
        "z": [box(1, 0.4)],
        "y": [box(1, 0.4)],
    }
    strategy = SelectionStrategy(CLASS_BALANCE)
    assert kept(strategy, day, 1, {0: 2, 1: 2}) == {"unsure"}
    assert kept(strategy, day, 1, {0: 5, 1: 2}) == {"y"}  # y and z tie on everything but the key
    assert kept(strategy, day, 1, None) == {"unsure"}  # no labels yet: all classes tie at 0


def test_class_balance_puts_an_image_without_detection_first() -> None:
    assert kept(SelectionStrategy(CLASS_BALANCE), {"a": [box(0, 0.1)], "b": []}, 1, {0: 0}) == {"b"}


@pytest.mark.parametrize("name", STRATEGIES)
@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_an_empty_day_and_a_budget_larger_than_the_day(name: str, share: float) -> None:
    strategy = SelectionStrategy(name, share)
    assert kept(strategy, {}, 3) == set()
    day = {"a": [box(0, 0.2)], "b": [], "c": [box(1, 0.3)], "sure": [box(1, 0.9)]}
    assert kept(strategy, day, 10) == {"a", "b", "c"}  # every routed image; the confident one is not routed
    assert kept(strategy, day, None) == {"a", "b", "c"}
    assert kept(strategy, day, 0) == set()


def test_a_random_share_draws_part_of_the_budget_reproducibly_per_day() -> None:
    day = {f"img-{index:02d}": [box(0, index / 100)] for index in range(40)}
    by_rank = SelectionStrategy(LEAST_CONFIDENCE)
    hybrid = SelectionStrategy(LEAST_CONFIDENCE, random_share=0.5)
    picks = kept(hybrid, day, 6, run_key="2026-11-26")
    assert len(picks) == 6
    assert kept(by_rank, day, 3) <= picks  # half by the strategy: its 3 best
    drawn = picks - kept(by_rank, day, 3)
    routed_rest = sorted(
        set(day) - kept(by_rank, day, 3), key=lambda key: uniform_draw("2026-11-26", key, "random-share")
    )
    assert drawn == set(routed_rest[:3])  # the other half: the lowest draws of the day among the rest
    assert kept(hybrid, day, 6, run_key="2026-11-26") == picks
    assert kept(hybrid, day, 6, run_key="2026-11-27") != picks


def test_random_picks_round_half_up_and_never_exceed_the_budget() -> None:
    assert [SelectionStrategy(random_share=0.5).random_picks(n) for n in (0, 1, 3, 6)] == [0, 1, 2, 3]
    assert SelectionStrategy(random_share=1.0).random_picks(4) == 4
    assert SelectionStrategy(random_share=0.3).random_picks(1) == 0


@pytest.mark.parametrize("name", STRATEGIES)
@pytest.mark.parametrize("share", [0.0, 0.4])
def test_the_choice_does_not_depend_on_the_order_of_the_day(name: str, share: float) -> None:
    rng = random.Random(7)
    day = {
        f"img-{index}": [box(rng.randrange(4), rng.choice([0.1, 0.2, 0.3, 0.4]), rng.choice([0.1, 0.5]))]
        for index in range(12)
    } | {"none": [], "none-2": []}
    counts = {0: 3, 1: 0, 2: 3, 3: 7}
    strategy = SelectionStrategy(name, share)
    expected = kept(strategy, day, 5, counts)
    assert len(expected) == 5
    items = list(day.items())
    for _ in range(20):
        rng.shuffle(items)
        assert kept(strategy, dict(items), 5, counts) == expected


def test_the_budget_streams_with_memory_bounded_by_the_limit() -> None:
    budget = ReviewBudget(3, random_share=0.34, run_key="r")
    strategy = SelectionStrategy(BOX_UNCERTAINTY)
    stream = [(f"k{index}", [box(0, 0.4), box(1, (index % 37) / 100)]) for index in range(500)]
    for key, found in stream:
        budget.offer(key, Decision(True, "low-confidence", 0.4), strategy.rank(found))
        assert len(budget) <= 3
    final = [budget.final(key, Decision(True, "low-confidence", 0.4)) for key, _ in stream]
    assert sum(decision.review for decision in final) == 3
    assert {decision.reason for decision in final if not decision.review} == {REASON_OVER_BUDGET}


def test_label_counts_count_the_boxes_of_each_class_in_manifest_lines() -> None:
    lines = [
        {
            "source-ref": "s3://b/a.jpg",
            "labels": {"annotations": [{"class_id": 3}, {"class_id": 3}, {"class_id": 1}]},
        },
        {"source-ref": "s3://b/b.jpg", "labels": {"annotations": [{"class_id": 1.0}]}},
        {"source-ref": "s3://b/c.jpg", "other": {"annotations": [{"class_id": 5}]}},
        {"source-ref": "s3://b/d.jpg", "labels": {"annotations": [{"class_id": "x"}, "junk"]}},
    ]
    assert label_counts(lines, "labels") == {3: 2, 1: 2}


@pytest.mark.parametrize(
    ("kwargs", "word"), [({"name": "entropy"}, "strategy"), ({"random_share": 1.5}, "random_share")]
)
def test_an_unknown_strategy_or_share_is_refused(kwargs: dict, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        SelectionStrategy(**kwargs)


def test_every_strategy_ranks_every_small_day_the_same_whatever_the_order() -> None:
    day = {"a": [box(0, 0.3)], "b": [box(1, 0.3)], "c": [], "d": [box(0, 0.3), box(1, 0.29)]}
    for name in STRATEGIES:
        results = {
            frozenset(kept(SelectionStrategy(name), dict(order), 2, {0: 1}))
            for order in itertools.permutations(day.items())
        }
        assert len(results) == 1, name
