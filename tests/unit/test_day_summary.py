"""The day's record (runs/<day>/summary.json): counts, decision, cost, starving."""

from __future__ import annotations

from typing import Any

import pytest

from active_learning.day_summary import (
    Prices,
    carried_training,
    estimated_cost,
    gate_decision,
    headline,
    is_starving,
    same_outcome,
    summarize_day,
)

PRICES = Prices(review_per_object=0.08, training_per_hour=3.825, transform_per_hour=0.24)
ARTIFACT = "s3://b/p/training/job-1/output/model.tar.gz"
RESULTS: dict[str, Any] = {
    "batch_predict": {
        "images": 40,
        "quarantined": 1,
        "to_review": 10,
        "reasons": {"confident": 29, "low-score": 7, "budget-fill": 3},
    },
    "start_human_loops": {"review_backend": "a2i", "loops": 10},
    "wait_for_human_loops": {"completed": 9, "failed_or_stopped": 1, "timed_out": False},
    "augmented_manifest": {"converted": 8, "skipped": 1, "errored": 0, "dropped_boxes": 2, "agreement": None},
    "incremental_training": {
        "training_job_name": "job-1",
        "training_lines": 50,
        "model_data_url": ARTIFACT,
        "validation_map": 0.61,
    },
    "evaluation_gate": {"promote": True, "reason": "new mAP 0.61 vs serving 0.5"},
    "update_endpoint": {"endpoint_config_name": "cfg-2"},
}
STATES = dict.fromkeys(RESULTS, "success") | {"approve_update": "skipped"}
SERVING = {
    "model_name": "model-2",
    "model_data_url": ARTIFACT,
    "endpoint_config_name": "cfg-2",
    "validation_map": 0.61,
}


def summarize(**changes: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "day": "2026-03-01",
        "loop": "active_learning",
        "run_id": "scheduled__2026-03-02",
        "results": RESULTS,
        "states": STATES,
        "serving": SERVING,
        "training_seconds": 1800.0,
        "transform_instance_seconds": 0.0,
        "prices": PRICES,
        "review_budget": 10,
        "target_map": 0.8,
        "written_at": "2026-03-02T01:00:00+00:00",
    }
    return summarize_day(**(arguments | changes))


def test_the_record_holds_the_days_counts_mAP_decision_and_cost() -> None:
    summary = summarize()

    assert (summary["images"], summary["quarantined"], summary["routed"], summary["empty_day"]) == (
        40,
        1,
        10,
        False,
    )
    assert summary["reasons"]["budget-fill"] == 3
    assert summary["reviews"] == {
        "backend": "a2i",
        "started": 10,
        "completed": 9,
        "failed_or_stopped": 1,
        "timed_out": False,
    }
    assert summary["labels"]["converted"] == 8
    assert summary["training"] == {"job_name": "job-1", "lines": 50, "model_data_url": ARTIFACT}
    assert summary["validation_map"] == {"new": 0.61, "serving": 0.61}
    assert summary["gate"]["decision"] == "updated"
    assert summary["endpoint_config"] == "cfg-2"
    # 9 reviews x 0.08 + 0.5 h x 3.825
    assert summary["cost"] == {
        "currency": "USD",
        "reviews": 0.72,
        "training": 1.9125,
        "transform": 0.0,
        "total": 2.6325,
        "per_label": 0.3291,
    }
    assert summary["starving"] is False  # routed the whole budget


def test_tasks_that_did_not_run_leave_their_parts_unknown_not_zero() -> None:
    summary = summarize(
        results={"batch_predict": RESULTS["batch_predict"]},
        states={"batch_predict": "success", "start_human_loops": "failed"},
    )

    assert summary["reviews"]["started"] is None
    assert summary["labels"]["converted"] is None
    assert summary["training"] is None
    assert summary["gate"]["decision"] == "no training"
    assert summary["cost"]["per_label"] is None


@pytest.mark.parametrize(
    ("states", "serving_url", "decision"),
    [
        (
            {"evaluation_gate": "skipped"},
            "s3://b/older.tar.gz",
            "not updated: worse, or trained from a model that no longer serves",
        ),
        (
            {"evaluation_gate": "success", "approve_update": "failed"},
            "s3://b/older.tar.gz",
            "not updated: not approved",
        ),
        (
            {"evaluation_gate": "success", "update_endpoint": "skipped"},
            "s3://b/newer.tar.gz",
            "not updated: another model took over",
        ),
        # a rerun: the gate skips (the model it would compare with is the day's own), yet it serves
        ({"evaluation_gate": "skipped"}, ARTIFACT, "updated"),
    ],
)
def test_the_decision_says_what_became_of_the_days_model(
    states: dict[str, str], serving_url: str, decision: str
) -> None:
    serving = {**SERVING, "model_data_url": serving_url}
    assert (
        gate_decision(RESULTS["incremental_training"], RESULTS["evaluation_gate"], states, serving)
        == decision
    )


def test_a_loop_routing_under_budget_below_the_target_is_starving() -> None:
    assert is_starving(images=40, routed=2, review_budget=10, validation_map=0.48, target_map=0.8)
    assert not is_starving(images=40, routed=10, review_budget=10, validation_map=0.48, target_map=0.8)
    assert not is_starving(images=40, routed=2, review_budget=10, validation_map=0.9, target_map=0.8)
    # unknowable: not starving
    assert not is_starving(images=40, routed=2, review_budget=None, validation_map=0.48, target_map=0.8)
    assert not is_starving(images=40, routed=2, review_budget=10, validation_map=None, target_map=0.8)
    assert not is_starving(images=40, routed=2, review_budget=10, validation_map=0.48, target_map=None)


def test_an_empty_day_is_flagged() -> None:
    empty = {**RESULTS, "batch_predict": {"images": 0, "quarantined": 0, "to_review": 0, "reasons": {}}}
    summary = summarize(results=empty, serving={**SERVING, "validation_map": 0.3})
    assert summary["empty_day"] is True
    assert summary["starving"] is False  # nothing to route: empty, not starving
    assert "(EMPTY)" in headline(summary)


def test_a_rerun_that_says_the_same_is_the_same_outcome() -> None:
    first = summarize()
    rerun = summarize(
        written_at="2026-03-05T00:00:00+00:00",
        run_id="manual__2026-03-05",
        states={**STATES, "day_summary": "running"},
    )
    assert same_outcome(first, rerun)
    assert not same_outcome(first, summarize(serving={**SERVING, "validation_map": 0.7}))
    assert not same_outcome(None, first)
    assert not same_outcome({**first, "version": 0}, first)


def test_cost_counts_transform_instance_time_and_no_labels_has_no_cost_per_label() -> None:
    cost = estimated_cost(0, 0.0, 7200.0, 0, PRICES)
    assert cost["transform"] == 0.48
    assert cost["per_label"] is None


def test_the_headline_names_the_day_and_its_numbers() -> None:
    line = headline(
        summarize(
            serving={**SERVING, "validation_map": 0.4},
            results={**RESULTS, "batch_predict": {**RESULTS["batch_predict"], "to_review": 2}},
        )
    )
    assert line.startswith("day 2026-03-01, 40 images, 2 routed, 9 reviewed, 8 labels, gate: updated")
    assert "serving mAP 0.400" in line
    assert line.endswith("STARVING")


def test_a_rerun_that_did_not_train_keeps_the_days_earlier_training() -> None:
    first = summarize()
    carried = carried_training(first)
    assert carried == RESULTS["incremental_training"] | {"validation_map": 0.61}
    rerun = summarize(
        results={
            **RESULTS,
            "incremental_training": carried,
            "evaluation_gate": None,
            "update_endpoint": None,
        },
        states={**STATES, "incremental_training": "skipped", "evaluation_gate": "skipped"},
    )
    assert same_outcome(first, rerun)
    assert carried_training(None) is None
    assert carried_training(summarize(results={"batch_predict": RESULTS["batch_predict"]})) is None
