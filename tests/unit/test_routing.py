from __future__ import annotations

import pytest

from active_learning.detections import Detection
from active_learning.routing import (
    REASON_AUDIT,
    REASON_BUDGET_FILL,
    REASON_CONFIDENT,
    REASON_LOW_CONFIDENCE,
    REASON_NO_DETECTIONS,
    REASON_OVER_BUDGET,
    Decision,
    ReviewBudget,
    RoutingPolicy,
)
from active_learning.selection import BOX_UNCERTAINTY, SelectionStrategy


def scored(*scores: float) -> list[Detection]:
    return [Detection(0, score, 0.1, 0.1, 0.2, 0.2) for score in scores]


def test_default_reproduces_the_seed_threshold() -> None:
    policy = RoutingPolicy()
    assert policy.decide(scored(0.245)) == Decision(True, REASON_LOW_CONFIDENCE, 0.245)
    assert policy.decide(scored(0.3, 0.7)).review is False
    # exactly the threshold is not reviewed (the seed's "< SCORE_THRESHOLD")
    assert policy.decide(scored(0.5)) == Decision(False, REASON_CONFIDENT, 0.5)
    assert policy.decide(scored(0.4999)).review is True


def test_no_detection_goes_to_review() -> None:
    assert RoutingPolicy().decide([]) == Decision(True, REASON_NO_DETECTIONS, None)


@pytest.mark.parametrize(
    "kwargs", [{"threshold": 1.5}, {"threshold": -0.1}, {"max_reviews": -1}, {"audit_fraction": 2.0}]
)
def test_invalid_policy_is_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        RoutingPolicy(**kwargs)


def day_of(policy: RoutingPolicy, scores: dict[str, list[float]]) -> dict[str, Decision]:
    return {key: policy.decide(scored(*values)) for key, values in scores.items()}


def test_cap_keeps_the_most_uncertain_and_marks_the_rest() -> None:
    policy = RoutingPolicy(max_reviews=2)
    decisions = day_of(policy, {"a": [0.4], "b": [], "c": [0.1], "d": [0.3], "e": [0.9]})
    day = policy.decide_day(decisions, run_key="2026-11-26")
    assert {k for k, d in day.items() if d.review} == {"b", "c"}
    assert day["a"].reason == day["d"].reason == REASON_OVER_BUDGET
    assert day["e"].reason == REASON_CONFIDENT


def test_cap_does_not_depend_on_order_and_breaks_ties_by_key() -> None:
    policy = RoutingPolicy(max_reviews=1)
    decisions = day_of(policy, {"z": [0.2], "y": [0.2]})
    reversed_decisions = dict(reversed(list(decisions.items())))
    assert policy.decide_day(decisions, "r") == policy.decide_day(reversed_decisions, "r")
    assert policy.decide_day(decisions, "r")["y"].review is True


def test_audit_sample_is_reproducible_and_near_the_fraction() -> None:
    policy = RoutingPolicy(audit_fraction=0.1)
    decisions = {f"img-{i}": policy.decide(scored(0.9)) for i in range(5000)}
    first = policy.decide_day(decisions, run_key="2026-11-26")
    again = policy.decide_day(decisions, run_key="2026-11-26")
    other_day = policy.decide_day(decisions, run_key="2026-11-25")
    audited = {k for k, d in first.items() if d.review}
    assert all(first[k].reason == REASON_AUDIT for k in audited)
    assert first == again
    assert audited != {k for k, d in other_day.items() if d.review}
    assert 400 < len(audited) < 600


def test_audit_samples_come_last_under_the_cap() -> None:
    policy = RoutingPolicy(audit_fraction=1.0, max_reviews=1)
    day = policy.decide_day(day_of(policy, {"confident": [0.9], "unsure": [0.3]}), "r")
    assert day["unsure"].review is True
    assert day["confident"] == Decision(False, REASON_OVER_BUDGET, 0.9)


def test_no_audit_by_default() -> None:
    policy = RoutingPolicy()
    assert not policy.in_audit_sample("r", "x")


def test_review_budget_holds_at_most_its_limit_and_agrees_with_decide_day() -> None:
    policy = RoutingPolicy(max_reviews=5, audit_fraction=0.05)
    decisions = {f"img-{i:05d}": policy.decide(scored((i * 7919 % 1000) / 1000)) for i in range(10_000)}
    budget = ReviewBudget(policy.max_reviews)
    streamed = {key: policy.with_audit(decision, "r", key) for key, decision in decisions.items()}
    for key, decision in streamed.items():
        budget.offer(key, decision)
        assert len(budget) <= 5
    final = {key: budget.final(key, decision) for key, decision in streamed.items()}
    assert final == policy.decide_day(decisions, "r")
    assert sum(decision.review for decision in final.values()) == 5


def test_review_budget_of_zero_keeps_nothing_and_none_keeps_everything() -> None:
    review = Decision(True, REASON_LOW_CONFIDENCE, 0.1)
    nothing, everything = ReviewBudget(0), ReviewBudget(None)
    for budget in (nothing, everything):
        budget.offer("a", review)
    assert nothing.final("a", review).reason == REASON_OVER_BUDGET
    assert everything.final("a", review) == review


# budget fill -------------------------------------------------------------------------------------
def test_the_seeds_threshold_routing_leaves_the_budget_unspent() -> None:
    policy = RoutingPolicy(max_reviews=3)  # fill_budget off: the seed's behaviour
    day = policy.decide_day(day_of(policy, {"a": [0.3], "b": [0.9], "c": [0.7]}), "2026-11-26")
    assert {key for key, decision in day.items() if decision.review} == {"a"}
    assert day["b"] == Decision(False, REASON_CONFIDENT, 0.9)


def test_a_day_that_routes_fewer_than_the_budget_fills_it_with_the_least_confident() -> None:
    policy = RoutingPolicy(max_reviews=3, fill_budget=True)
    scores = {"a": [0.3], "b": [0.95], "c": [0.7], "d": [0.6], "e": [0.99]}
    day = policy.decide_day(day_of(policy, scores), "2026-11-26")
    assert day["a"] == Decision(True, REASON_LOW_CONFIDENCE, 0.3)
    assert day["d"] == Decision(True, REASON_BUDGET_FILL, 0.6)
    assert day["c"] == Decision(True, REASON_BUDGET_FILL, 0.7)
    assert day["b"] == Decision(False, REASON_CONFIDENT, 0.95)
    assert sum(decision.review for decision in day.values()) == 3


def test_budget_fill_ranks_by_the_strategy_which_sees_every_object() -> None:
    """box-uncertainty: an image whose best object is sure but another is not is filled first."""
    policy = RoutingPolicy(max_reviews=1, fill_budget=True, selection=SelectionStrategy(BOX_UNCERTAINTY))
    one_sure = [Detection(0, 0.9, 0.1, 0.1, 0.2, 0.2)]
    sure_and_unsure = [
        Detection(0, 0.95, 0.1, 0.1, 0.2, 0.2),
        Detection(1, 0.55, 0.5, 0.5, 0.7, 0.7),  # a second object: 0.55 against 0.45
        Detection(2, 0.45, 0.5, 0.5, 0.7, 0.7),
    ]
    images = {"one-sure": one_sure, "hidden-unsure": sure_and_unsure}
    decisions = {key: policy.decide(found) for key, found in images.items()}
    assert not any(decision.review for decision in decisions.values())
    day = policy.decide_day(decisions, "r", detections=images)
    assert day["hidden-unsure"].reason == REASON_BUDGET_FILL
    assert day["one-sure"].review is False


def test_budget_fill_is_the_same_for_a_day_in_any_order_and_holds_at_most_the_limit() -> None:
    policy = RoutingPolicy(max_reviews=5, fill_budget=True)
    decisions = {f"img-{i:05d}": policy.decide(scored(0.5 + (i * 7919 % 500) / 1000)) for i in range(5000)}
    decisions["unsure"] = policy.decide(scored(0.1))
    forward = policy.decide_day(decisions, "2026-11-26")
    backward = policy.decide_day(dict(reversed(list(decisions.items()))), "2026-11-26")
    assert forward == backward
    assert policy.decide_day(decisions, "2026-11-26") == forward  # deterministic for the day
    reviewed = {key: decision.reason for key, decision in forward.items() if decision.review}
    assert len(reviewed) == 5
    assert reviewed.pop("unsure") == REASON_LOW_CONFIDENCE
    assert set(reviewed.values()) == {REASON_BUDGET_FILL}
    budget = policy.budget("2026-11-26")
    for key, decision in decisions.items():
        budget.offer(key, decision)
        assert len(budget) <= 2 * 5  # the reviews and the fill candidates, each at most the limit


def test_budget_fill_never_exceeds_a_full_budget() -> None:
    policy = RoutingPolicy(max_reviews=2, fill_budget=True)
    day = policy.decide_day(day_of(policy, {"a": [0.1], "b": [0.2], "c": [0.3], "d": [0.9]}), "r")
    assert {key for key, decision in day.items() if decision.review} == {"a", "b"}
    assert day["d"].reason == REASON_CONFIDENT
