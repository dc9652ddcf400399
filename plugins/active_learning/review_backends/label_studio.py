"""The review step on Label Studio: project set-up, tasks with the model's boxes, progress, harvest.

Used by the review tasks (``create_human_review_workflow``, ``start_human_loops``,
``wait_for_human_loops``, ``augmented_manifest``) when the run's ``review_backend`` is
``label_studio``; the conversion to manifest lines is the domain core's, shared with A2I.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from airflow.providers.amazon.aws.hooks.s3 import S3Hook

from active_learning.hooks.label_studio import (
    DEFAULT_CONN_ID,
    PAGE_SIZE,
    LabelStudioHook,
    labeling_config,
    rectangle_result,
)
from active_learning.hooks.s3_lines import put_json_lines
from active_learning.manifest import ManifestConversionError, convert_review, label_studio_review
from active_learning.naming import human_loop_name, stable_hash
from active_learning.reviews import ReviewProgress, ReviewRequest, label_studio_status
from active_learning.settings import LoopSettings, split_s3_uri

BACKEND = "label_studio"
# The longest a SigV4 presigned URL is valid (7 days): a review window longer than that needs a
# Label Studio S3 storage connection instead (see the README's "Choosing a review backend").
PRESIGNED_URL_SECONDS = 7 * 24 * 3600
# The A2I task template's instructions (include/templates/bounding-box.liquid.html), in one paragraph.
INSTRUCTIONS = (
    "The image opens with the boxes the model proposed; they can be wrong, loose or missing. Fix each "
    "box: drag its edges so it touches the object's outermost pixels. Relabel a box whose class is "
    "wrong. Delete a box that covers no object of the listed classes. Add a box for every object the "
    "model missed, including partly hidden ones. One box per object; do not box objects of classes "
    "that are not listed. If the image shows no object of the listed classes, submit it with no box."
)


class LabelStudioConnectionMixin:
    """The ``label_studio_conn_id`` argument of the review tasks (used when Label Studio reviews)."""

    def __init__(self, *args: Any, label_studio_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.label_studio_conn_id = label_studio_conn_id

    def label_studio(self, settings: LoopSettings) -> LabelStudioReview:
        """The run's review step on Label Studio, with this task's S3 hook and logger."""
        return LabelStudioReview(
            LabelStudioHook(self.label_studio_conn_id),
            self.s3,  # type: ignore[attr-defined]
            settings,
            self.log,  # type: ignore[attr-defined]
        )


def project_title(settings: LoopSettings) -> str:
    """One project per class list and review settings: a retry finds it, a change makes a new one."""
    digest = stable_hash(labeling_config(settings.class_names, INSTRUCTIONS), settings.task_count)
    return f"{settings.resource_prefix}-review-{digest}"


class LabelStudioReview:
    """The review step of one run on Label Studio.

    :param hook: the Label Studio hook (connection ``label_studio_conn_id``).
    :param s3: the task's S3 hook (predictions, the day's records, presigned image URLs).
    :param settings: the run's settings.
    :param log: the task's logger.
    """

    def __init__(self, hook: LabelStudioHook, s3: S3Hook, settings: LoopSettings, log: Any) -> None:
        self.hook, self.s3, self.settings, self.log = hook, s3, settings, log

    # set-up ----------------------------------------------------------------------------------
    def set_up(self) -> dict[str, Any]:
        """Make sure the project exists; what ``create_human_review_workflow`` returns."""
        project = self.hook.ensure_project(
            project_title(self.settings), self.settings.class_names, INSTRUCTIONS, self.settings.task_count
        )
        self.log.info("Label Studio project %s (id %s)", project["title"], project["id"])
        return {
            "review_backend": BACKEND,
            "label_studio_project_id": project["id"],
            "label_studio_project_title": project["title"],
            # the A2I keys stay, empty, so that the start task's pull finds them whichever backend runs
            "flow_definition_name": "",
            "flow_definition_arn": "",
            "human_task_ui_arn": "",
        }

    # start -----------------------------------------------------------------------------------
    def task(self, request: ReviewRequest, day: date, reason: str, model_version: str) -> dict[str, Any]:
        """One task: the image by a presigned URL, the review's identity in ``data``, the model's boxes."""
        bucket, key = split_s3_uri(request.source)
        image_url = self.s3.generate_presigned_url(
            "get_object", params={"Bucket": bucket, "Key": key}, expires_in=PRESIGNED_URL_SECONDS
        )
        return {
            "data": {
                "image": image_url,
                "name": request.name,
                "source": request.source,
                "day": day.isoformat(),
                "width": request.width,
                "height": request.height,
                "reason": reason,
            },
            "predictions": [
                {
                    "model_version": model_version,
                    "score": max((box.get("score", 0.0) for box in request.boxes), default=0.0),
                    "result": [rectangle_result(box, request.width, request.height) for box in request.boxes],
                }
            ],
        }

    def start(
        self,
        day: date,
        predictions: Iterator[Mapping[str, Any]],
        model_version: str,
        min_score: float,
        max_boxes: int,
    ) -> dict[str, Any]:
        """Import one task per routed image, adopting the day's tasks imported before (by name).

        Writes ``runs/<day>/human-loops.jsonl`` (one record per task of the day, carried ones
        included); returns what ``wait_for_human_loops`` needs.
        """
        settings = self.settings
        project = self.set_up()
        project_id = project["label_studio_project_id"]
        existing = {
            task["data"].get("name"): task for task in self.hook.day_tasks(project_id, day.isoformat())
        }
        new_tasks = []
        reasons: dict[str, str] = {}
        for record in predictions:
            if not record["review"]:
                continue
            name = human_loop_name(settings.resource_prefix, day, record["source"])
            reasons[name] = record["reason"]
            if name in existing:
                continue
            request = ReviewRequest.from_prediction(name, record, settings.class_names, min_score, max_boxes)
            new_tasks.append(self.task(request, day, record["reason"], model_version))
        if new_tasks:
            self.hook.import_tasks(project_id, new_tasks)
            # the labeling page pre-draws the predictions of the project's model version: the newest
            # day's serving model (it must exist as predictions first, so after the import)
            self.hook.set_model_version(project_id, model_version)
            existing = {t["data"].get("name"): t for t in self.hook.day_tasks(project_id, day.isoformat())}
        adopted = len(reasons) - len(new_tasks)
        carried = [name for name in existing if name not in reasons]
        if carried:
            self.log.warning(
                "Keeping %d tasks of an earlier try or run whose images are no longer routed: "
                "their answers are still harvested",
                len(carried),
            )
        imported_now = {task["data"]["name"] for task in new_tasks}
        records = [
            {
                "name": name,
                "source": task["data"].get("source"),
                "reason": reasons.get(name)
                or task["data"].get("reason", "imported by an earlier try or run"),
                "backend": BACKEND,
                "project_id": project_id,
                "task_id": task["id"],
                "created": task.get("created_at") or datetime.now(UTC).isoformat(),
                "started": name in imported_now,
            }
            for name, task in sorted(existing.items())
        ]
        key = settings.run_key(day, "human-loops.jsonl")
        put_json_lines(self.s3, settings.bucket, key, records)
        self.log.info(
            "Label Studio project %s: %d tasks imported, %d adopted, %d carried (API calls: %d)",
            project_id,
            len(new_tasks),
            adopted,
            len(carried),
            self.hook.calls,
        )
        return {
            "review_backend": BACKEND,
            "loops": len(records),
            "started": len(new_tasks),
            "adopted": adopted,
            "carried": len(carried),
            "human_loops_uri": f"s3://{settings.bucket}/{key}",
            "label_studio_project_id": project_id,
            "day": day.isoformat(),
            "required_answers": settings.task_count,
        }


# wait --------------------------------------------------------------------------------------------
def day_progress(
    hook: LabelStudioHook, project_id: int, day: str, names: frozenset[str], required_answers: int
) -> ReviewProgress:
    """One check: the day's tasks, 100 per call (``ceil(N / 100)`` calls), counted in review words."""
    statuses = (
        (task["data"].get("name", ""), *label_studio_status(task, required_answers))
        for task in hook.day_tasks(project_id, day, fields="task_only")
    )
    return ReviewProgress.from_statuses(statuses, names)


def stop_open_tasks(
    hook: LabelStudioHook, project_id: int, day: str, names: frozenset[str], required: int
) -> int:
    """Take the run's tasks still open out of the labeling stream (one more listing, a call per task)."""
    open_tasks = [
        task["id"]
        for task in hook.day_tasks(project_id, day, fields="task_only")
        if task["data"].get("name") in names and label_studio_status(task, required)[0] == "InProgress"
    ]
    for task_id in open_tasks:
        hook.stop_task(task_id, "review timeout")
    return len(open_tasks)


def max_calls_per_check(tasks: int) -> int:
    """The listing calls a check may make for ``tasks`` tasks, plus the token exchange."""
    return math.ceil(tasks / PAGE_SIZE) + 1


# harvest -----------------------------------------------------------------------------------------
def harvest(
    hook: LabelStudioHook,
    settings: LoopSettings,
    project_id: int,
    day: str,
    records: Sequence[Mapping[str, Any]],
    predicted_size: Callable[[str], tuple[int, int] | None],
) -> Iterator[dict[str, Any]]:
    """One report per recorded task (``converted`` with its ``line``, ``skipped`` or ``error``).

    Only the tasks the run recorded count, found by their Label Studio id; each answer is for the
    image of the run's record, never for what the task's data says (a task whose data disagrees
    is an ``error`` naming both).
    """
    tasks = {task.get("id"): task for task in hook.day_tasks(project_id, day)}
    for record in records:
        report: dict[str, Any] = {"name": record["name"], "source": record["source"]}
        task = tasks.get(record.get("task_id"))
        if task is None:
            yield {
                **report,
                "outcome": "skipped",
                "reason": f"task {record.get('task_id')} is gone from Label Studio",
            }
            continue
        status, reason = label_studio_status(task, settings.task_count)
        if status != "Completed":
            yield {**report, "outcome": "skipped", "reason": f"task is {status}: {reason or 'no answer'}"}
            continue
        try:
            conversion = convert_review(
                label_studio_review(task),
                settings.class_names,
                settings.label_attribute,
                predicted_size,
                recorded=(record["name"], record["source"]),
                max_boxes=settings.max_boxes_per_image,
            )
        except Exception as err:  # one unusable task is recorded with its reason; the others go on
            kind = "conversion" if isinstance(err, ManifestConversionError) else type(err).__name__
            yield {**report, "outcome": "error", "reason": f"{kind}: {err}"}
            continue
        report["dropped_boxes"] = [dropped.to_dict() for dropped in conversion.dropped_boxes]
        if conversion.line is None:
            yield {**report, "outcome": "skipped", "reason": "no box left to train on"}
        else:
            yield {**report, "outcome": "converted", "line": conversion.line}
