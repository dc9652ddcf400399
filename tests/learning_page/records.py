"""Day records as the loop's ``day_summary`` task makes them, for the Learning page's tests."""

from __future__ import annotations

from typing import Any

from active_learning.day_summary import Prices, summarize_day

PRICES = Prices(review_per_object=0.08, training_per_hour=1.0, transform_per_hour=0.5)
TASKS = (
    "batch_predict",
    "start_human_loops",
    "wait_for_human_loops",
    "augmented_manifest",
    "incremental_training",
    "evaluation_gate",
    "update_endpoint",
)


def day_record(
    day: str,
    *,
    images: int = 40,
    routed: int = 8,
    completed: int = 8,
    failed: int = 0,
    labels: int = 8,
    new_map: float | None = 0.31,
    serving_map: float | None = 0.31,
    budget: int = 8,
    target_map: float = 0.5,
    run_id: str | None = None,
    written_at: str | None = None,
    loop: str = "active_learning",
) -> dict[str, Any]:
    """The record :func:`summarize_day` writes for a day that went as the arguments say.

    ``new_map=None``: the day did not train (its training skipped, no gate, no update).
    """
    trained = new_map is not None
    results: dict[str, Any] = {
        "batch_predict": {"images": images, "to_review": routed, "quarantined": 0, "reasons": {}},
        "start_human_loops": {"loops": routed, "review_backend": "a2i"},
        "wait_for_human_loops": {"completed": completed, "failed_or_stopped": failed},
        "augmented_manifest": {"converted": labels, "skipped": 0, "errored": 0, "dropped_boxes": 0},
        "incremental_training": {"validation_map": new_map, "training_job_name": f"job-{day}"}
        if trained
        else None,
        "evaluation_gate": {"reason": "not worse"} if trained else None,
        "update_endpoint": {"endpoint_config_name": f"config-{day}"} if trained else None,
    }
    states = dict.fromkeys(TASKS, "success")
    if not trained:
        states.update(incremental_training="skipped", evaluation_gate="skipped", update_endpoint="skipped")
    return summarize_day(
        day=day,
        loop=loop,
        run_id=run_id or f"scheduled__{day}T00:00:00+00:00",
        results=results,
        states=states,
        serving={"model_name": f"model-{day}", "validation_map": serving_map},
        training_seconds=600.0 if trained else 0.0,
        transform_instance_seconds=0.0,
        prices=PRICES,
        review_budget=budget,
        target_map=target_map,
        written_at=written_at or f"{day}T23:00:00+00:00",
    )
