"""The day's record: what a day of the loop did, what it cost, and whether the loop is starving.

Built by the day's last task from the other tasks' results (pure: no I/O here), written to
``runs/<day>/summary.json`` and put on the manifest Asset event's ``extra``; the Learning page,
``make demo`` and the alerts read it. A task that did not run (skipped, failed) leaves its part
``None``: the record says what is known, never a made-up zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SUMMARY_VERSION = 1
# keys that differ between two runs that did the same thing: not compared (see same_outcome)
VOLATILE_KEYS = frozenset({"written_at", "run_id", "tasks"})
SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class Prices:
    """What one review and one instance-hour cost (USD); see docs/cost.md for the sources.

    :param review_per_object: per image whose review completed.
    :param training_per_hour: per billable training instance-hour.
    :param transform_per_hour: per Batch Transform instance-hour.
    """

    review_per_object: float
    training_per_hour: float
    transform_per_hour: float


def _count(result: Mapping[str, Any] | None, key: str) -> int | None:
    return None if result is None or result.get(key) is None else int(result[key])


def estimated_cost(
    reviews_completed: int,
    training_seconds: float,
    transform_instance_seconds: float,
    labels: int,
    prices: Prices,
) -> dict[str, Any]:
    """The day's estimated cost by part, in USD, rounded to the cent's hundredth; per label too."""
    parts = {
        "reviews": reviews_completed * prices.review_per_object,
        "training": training_seconds / SECONDS_PER_HOUR * prices.training_per_hour,
        "transform": transform_instance_seconds / SECONDS_PER_HOUR * prices.transform_per_hour,
    }
    total = sum(parts.values())
    return {
        "currency": "USD",
        **{name: round(value, 4) for name, value in parts.items()},
        "total": round(total, 4),
        "per_label": round(total / labels, 4) if labels else None,
    }


def is_starving(
    images: int | None,
    routed: int | None,
    review_budget: int | None,
    validation_map: float | None,
    target_map: float | None,
) -> bool:
    """A loop that asks for fewer labels than its budget while its model is still below the target.

    The model grew confident, not right: the threshold routes little, the budget goes unspent and the
    model stops learning. Unknowable (no budget, no target, no mAP yet): not starving; nor is a day
    with no image to route (an empty day, flagged as such).
    """
    if not images:
        return False
    if routed is None or review_budget is None or validation_map is None or target_map is None:
        return False
    return routed < review_budget and validation_map < target_map


def gate_decision(
    training: Mapping[str, Any] | None,
    gate: Mapping[str, Any] | None,
    states: Mapping[str, str],
    serving: Mapping[str, Any] | None,
) -> str:
    """What became of the day's model, in a few words (the reasons are in the tasks' logs)."""
    if training is None:
        return "no training"
    if serving is not None and serving.get("model_data_url") == training.get("model_data_url"):
        return "updated"  # also on a rerun, whose gate skips: the day's model already serves
    if states.get("evaluation_gate") == "skipped":
        return "not updated: worse, or trained from a model that no longer serves"
    if states.get("approve_update") in ("skipped", "failed") and gate is not None:
        return "not updated: not approved"
    if states.get("update_endpoint") == "skipped":
        return "not updated: another model took over"
    return f"not updated: update_endpoint {states.get('update_endpoint', 'did not run')}"


def summarize_day(
    *,
    day: str,
    loop: str,
    run_id: str,
    results: Mapping[str, Mapping[str, Any] | None],
    states: Mapping[str, str],
    serving: Mapping[str, Any] | None,
    training_seconds: float,
    transform_instance_seconds: float,
    prices: Prices,
    review_budget: int | None,
    target_map: float | None,
    written_at: str,
) -> dict[str, Any]:
    """The day's record from its tasks' results.

    :param day: the day processed, ``YYYY-MM-DD``.
    :param loop: the loop's name (its DAG id).
    :param run_id: the DagRun that wrote it.
    :param results: each task's return value by task id (``None``: it returned nothing).
    :param states: each task's state by task id.
    :param serving: the model serving at the end of the day (``model_name``, ``model_data_url``,
        ``endpoint_config_name``, ``validation_map``).
    :param training_seconds: the training job's billable seconds (0 without one).
    :param transform_instance_seconds: the transform job's run time times its instances (0 without one).
    :param prices: see :class:`Prices`.
    :param review_budget: the ``max_reviews`` setting.
    :param target_map: validation mAP below which a loop routing under budget is starving.
    :param written_at: ISO time of writing.
    """
    predicted = results.get("batch_predict")
    started = results.get("start_human_loops")
    waited = results.get("wait_for_human_loops")
    manifest = results.get("augmented_manifest")
    training = results.get("incremental_training")
    gate = results.get("evaluation_gate")
    update = results.get("update_endpoint")
    images = _count(predicted, "images")
    routed = _count(predicted, "to_review")
    completed = _count(waited, "completed") or 0
    labels = _count(manifest, "converted") or 0
    serving_map = None if serving is None else serving.get("validation_map")
    new_map = None if training is None else training.get("validation_map")
    decision = gate_decision(training, gate, states, serving)
    return {
        "version": SUMMARY_VERSION,
        "loop": loop,
        "day": day,
        "run_id": run_id,
        "written_at": written_at,
        "images": images,
        "empty_day": images == 0,
        "quarantined": _count(predicted, "quarantined"),
        "routed": routed,
        "reasons": dict((predicted or {}).get("reasons") or {}),
        "predict_mode": "batch_transform" if (predicted or {}).get("transform_job_name") else "realtime",
        "transform_job": (predicted or {}).get("transform_job_name"),
        "reviews": {
            "backend": (started or {}).get("review_backend"),
            "started": _count(started, "loops"),
            "completed": _count(waited, "completed"),
            "failed_or_stopped": _count(waited, "failed_or_stopped"),
            "timed_out": bool((waited or {}).get("timed_out")),
        },
        "labels": {
            "converted": _count(manifest, "converted"),
            "skipped": _count(manifest, "skipped"),
            "errored": _count(manifest, "errored"),
            "dropped_boxes": _count(manifest, "dropped_boxes"),
            "agreement": None if manifest is None else manifest.get("agreement"),
        },
        "training": None
        if training is None
        else {
            "job_name": training.get("training_job_name"),
            "lines": training.get("training_lines"),
            "model_data_url": training.get("model_data_url"),
        },
        "validation_map": {"new": new_map, "serving": serving_map},
        # the gate's reasoning is in its log; the record keeps what a rerun cannot change
        "gate": {"decision": decision},
        "serving_model": None if serving is None else serving.get("model_name"),
        # the config the day's model serves with (a rerun does not update: the endpoint says it)
        "endpoint_config": (update or {}).get("endpoint_config_name")
        or ((serving or {}).get("endpoint_config_name") if decision == "updated" else None),
        "cost": estimated_cost(completed, training_seconds, transform_instance_seconds, labels, prices),
        "review_budget": review_budget,
        "starving": is_starving(images, routed, review_budget, serving_map, target_map),
        "tasks": dict(sorted(states.items())),
    }


def carried_training(earlier: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The training of an earlier record of the day, as the training task returns it; ``None``
    without one. A rerun of a trained day skips training (its labels are trained already): the
    day's record keeps the training that took them."""
    training = (earlier or {}).get("training")
    if not training:
        return None
    return {
        "training_job_name": training["job_name"],
        "training_lines": training["lines"],
        "model_data_url": training["model_data_url"],
        "validation_map": (earlier or {}).get("validation_map", {}).get("new"),
    }


def changed_parts(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[str]:
    """The parts of the record a rerun changed (when and by which run aside); all without an old one."""
    if old is None or old.get("version") != new.get("version"):
        return sorted(new)
    keys = (set(old) | set(new)) - VOLATILE_KEYS
    return sorted(key for key in keys if old.get(key) != new.get(key))


def same_outcome(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether a rerun's record says what the last one said (when and by which run aside)."""
    return not changed_parts(old, new)


def headline(summary: Mapping[str, Any]) -> str:
    """One line for a run's note, an alert or a log: the day and its numbers."""
    reviews = summary.get("reviews") or {}
    maps = summary.get("validation_map") or {}
    serving = maps.get("serving")
    parts = [
        f"day {summary['day']}",
        f"{summary.get('images')} images" + (" (EMPTY)" if summary.get("empty_day") else ""),
        f"{summary.get('routed')} routed",
        f"{reviews.get('completed')} reviewed",
        f"{(summary.get('labels') or {}).get('converted')} labels",
        f"gate: {(summary.get('gate') or {}).get('decision')}",
        f"serving mAP {serving:.3f}" if isinstance(serving, float) else "serving mAP n/a",
        f"est. ${(summary.get('cost') or {}).get('total', 0):.2f}",
    ]
    if summary.get("starving"):
        parts.append("STARVING")
    return ", ".join(parts)


def _map(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def approval_markdown(
    *,
    day: str,
    reason: str,
    new_map: float | None,
    serving_map: float | None,
    training_lines: int | None,
    job_name: str,
    job_url: str,
    reviews_completed: int | None,
    labels: int | None,
    cost: Mapping[str, Any],
    learning_page_url: str,
) -> str:
    """What a person reads before approving an update (the Required Action page renders Markdown)."""
    return "\n".join(
        [
            f"**Update the endpoint with the model trained for {day}?**",
            "",
            "| model | validation mAP |",
            "|---|---|",
            f"| new | {_map(new_map)} |",
            f"| serving | {_map(serving_map)} |",
            "",
            f"- Gate: {reason}",
            f"- Trained on {training_lines} labelled images, every day's labels so far: "
            f"training job [{job_name}]({job_url})",
            f"- The day: {reviews_completed} reviews completed, {labels} new labels",
            f"- Estimated cost of the day: ${cost['total']:.2f} (reviews ${cost['reviews']:.2f}, "
            f"training ${cost['training']:.2f})",
            f"- [The loop's Learning page]({learning_page_url})",
        ]
    )
