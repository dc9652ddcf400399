"""Label Studio reviews: project set-up, tasks with the model's boxes, progress, harvest.

The backend ``label_studio`` of the review tasks; the conversion to manifest lines is the domain
core's, shared with every backend.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from active_learning.hooks.label_studio import (
    DEFAULT_CONN_ID,
    PAGE_SIZE,
    LabelStudioHook,
    labeling_config,
    rectangle_result,
)
from active_learning.hooks.models import ModelLineageHook
from active_learning.hooks.s3_lines import put_json_lines
from active_learning.manifest import ManifestConversionError, convert_review, label_studio_review
from active_learning.naming import stable_hash
from active_learning.review_backends.base import PredictedSize, ReviewBackend, ReviewUi
from active_learning.reviews import ReviewProgress, ReviewRequest, label_studio_status
from active_learning.settings import LoopSettings, split_s3_uri
from active_learning.triggers.label_studio import LabelStudioReviewTrigger

BACKEND = "label_studio"
# The longest a SigV4 presigned URL is valid (7 days): a review window longer than that needs a
# Label Studio S3 storage connection instead (see the README's "Choosing a review backend").
PRESIGNED_URL_SECONDS = 7 * 24 * 3600
# The labeling page pre-draws only the predictions whose model_version is the project's: one label
# for every day's boxes, so an older day's open tasks keep theirs after a newer model is deployed.
# Which SageMaker model drew them is in the task's data (``model``).
PREDICTION_VERSION = "serving-model"
# The A2I task template's instructions (include/templates/bounding-box.liquid.html), in one paragraph.
INSTRUCTIONS = (
    "The image opens with the boxes the model proposed; they can be wrong, loose or missing. Fix each "
    "box: drag its edges so it touches the object's outermost pixels. Relabel a box whose class is "
    "wrong. Delete a box that covers no object of the listed classes. Add a box for every object the "
    "model missed, including partly hidden ones. One box per object; do not box objects of classes "
    "that are not listed. If the image shows no object of the listed classes, submit it with no box."
)


def project_title(settings: LoopSettings) -> str:
    """One project per class list and review settings: a retry finds it, a change makes a new one."""
    digest = stable_hash(labeling_config(settings.class_names, INSTRUCTIONS), settings.task_count)
    return f"{settings.resource_prefix}-review-{digest}"


class LabelStudioReview(ReviewBackend):
    """Reviews in a self-hosted Label Studio (its HTTP connection: the task's ``review_conn_id``,
    default ``label_studio_default``).

    Set-up: one project per class list and review settings. Start: one task per image (the image by
    a presigned URL, the model's boxes as a prediction of the serving model), adopting the day's
    tasks imported before, by name. Wait: the project's tasks of the day, 100 per call (``ceil(N /
    100)`` calls plus a token exchange); a task is complete with ``task_count`` submitted annotations;
    at a timeout the open ones leave the labeling stream, marked stopped. Harvest: only the tasks the
    run recorded, by task id.
    """

    name = BACKEND

    def hook(self) -> LabelStudioHook:
        """A fresh hook: a fresh access token (each check of a long wait gets one)."""
        return LabelStudioHook(self.task.review_conn_id or DEFAULT_CONN_ID)

    # set-up ----------------------------------------------------------------------------------
    def set_up(self, context: Any, ui: ReviewUi | None = None) -> dict[str, Any]:
        """Make sure the project exists."""
        hook = self.hook()
        project = hook.ensure_project(
            project_title(self.settings), self.settings.class_names, INSTRUCTIONS, self.settings.task_count
        )
        self.task.log.info("Label Studio project %s (id %s)", project["title"], project["id"])
        if context is not None:
            self.task.persist_review_link(context, f"{hook.base_url}/projects/{project['id']}/data")
        return {
            "review_backend": BACKEND,
            "label_studio_project_id": project["id"],
            "label_studio_project_title": project["title"],
        }

    # start -----------------------------------------------------------------------------------
    def task_of(self, request: ReviewRequest, model_name: str) -> dict[str, Any]:
        """One task: the image by a presigned URL, the review's identity in ``data``, the model's boxes."""
        bucket, key = split_s3_uri(request.source)
        image_url = self.task.s3.generate_presigned_url(
            "get_object", params={"Bucket": bucket, "Key": key}, expires_in=PRESIGNED_URL_SECONDS
        )
        return {
            "data": {
                "image": image_url,
                "name": request.name,
                "source": request.source,
                "day": self.task.run_day.isoformat(),
                "width": request.width,
                "height": request.height,
                "reason": request.reason,
                "model": model_name,
            },
            "predictions": [self.prediction_of(request)],
        }

    @staticmethod
    def prediction_of(request: ReviewRequest) -> dict[str, Any]:
        """The model's boxes as a Label Studio prediction."""
        return {
            "model_version": PREDICTION_VERSION,
            "score": max((box.get("score", 0.0) for box in request.boxes), default=0.0),
            "result": [rectangle_result(box, request.width, request.height) for box in request.boxes],
        }

    def add_missing_predictions(
        self,
        hook: LabelStudioHook,
        project_id: int,
        tasks: Mapping[str, Mapping[str, Any]],
        routed: Mapping[str, ReviewRequest],
    ) -> None:
        """Give each routed task without a prediction its boxes (100 a call).

        Label Studio 1.23's import can store the tasks of a batch and none of their predictions,
        answering 201 (a prediction it cannot store discards the batch's, unreported); an earlier
        try's tasks may lack them too. The predictions API reports what it refuses.
        """
        bare = [
            task
            for name, task in sorted(tasks.items())
            if name in routed and not task.get("total_predictions", len(task.get("predictions") or []))
        ]
        if bare:
            hook.add_predictions(
                project_id,
                [{"task": task["id"], **self.prediction_of(routed[task["data"]["name"]])} for task in bare],
            )
            self.task.log.warning(
                "Label Studio kept no prediction for %d tasks of the import: added them", len(bare)
            )

    def start(
        self, requests: Iterable[ReviewRequest], set_up: Mapping[str, Any], context: Any
    ) -> dict[str, Any]:
        """Import one task per request, adopting the day's tasks imported before (by name).

        Writes ``runs/<day>/human-loops.jsonl`` (one record per task of the day, carried ones
        included); returns what the wait needs.
        """
        settings, day, log = self.settings, self.task.run_day, self.task.log
        hook = self.hook()
        project = self.set_up(context)
        project_id = project["label_studio_project_id"]
        serving = self.task.aws_hook(ModelLineageHook).serving_model(settings.endpoint_name)
        model_name = serving.model_name if serving else "none"
        existing = {task["data"].get("name"): task for task in hook.day_tasks(project_id, day.isoformat())}
        new_tasks = []
        routed: dict[str, ReviewRequest] = {}
        for request in requests:
            routed[request.name] = request
            if request.name not in existing:
                new_tasks.append(self.task_of(request, model_name))
        if new_tasks:
            hook.import_tasks(project_id, new_tasks)
            # the version must exist as predictions first, so after the import
            hook.set_model_version(project_id, PREDICTION_VERSION)
            existing = {t["data"].get("name"): t for t in hook.day_tasks(project_id, day.isoformat())}
        self.add_missing_predictions(hook, project_id, existing, routed)
        reasons = {name: request.reason for name, request in routed.items()}
        adopted = len(reasons) - len(new_tasks)
        carried = [name for name in existing if name not in reasons]
        if carried:
            log.warning(
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
        put_json_lines(self.task.s3, settings.bucket, key, records)
        log.info(
            "Label Studio project %s: %d tasks imported, %d adopted, %d carried (API calls: %d)",
            project_id,
            len(new_tasks),
            adopted,
            len(carried),
            hook.calls,
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

    # wait ------------------------------------------------------------------------------------
    def progress(self, started: Mapping[str, Any], own: frozenset[str]) -> ReviewProgress:
        return self.hook().day_progress(
            int(started["label_studio_project_id"]),
            str(started["day"]),
            own,
            int(started["required_answers"]),
        )

    def stop_open(self, started: Mapping[str, Any], own: frozenset[str]) -> int:
        return self.hook().stop_open_tasks(
            int(started["label_studio_project_id"]),
            str(started["day"]),
            own,
            int(started["required_answers"]),
        )

    def trigger(self, started: Mapping[str, Any], **wait: Any) -> LabelStudioReviewTrigger:
        return LabelStudioReviewTrigger(
            label_studio_conn_id=self.task.review_conn_id or DEFAULT_CONN_ID,
            project_id=int(started["label_studio_project_id"]),
            day=str(started["day"]),
            required_answers=int(started["required_answers"]),
            **wait,
        )

    # harvest ---------------------------------------------------------------------------------
    def harvest(
        self, records: Iterable[Mapping[str, Any]], predicted_size: PredictedSize
    ) -> Iterator[dict[str, Any]]:
        records = list(records)
        projects = sorted(
            {record["project_id"] for record in records if record.get("project_id") is not None}
        )
        for project_id in projects:
            yield from harvest(
                self.hook(),
                self.settings,
                project_id,
                self.task.run_day.isoformat(),
                [record for record in records if record.get("project_id") == project_id],
                predicted_size,
            )


# wait --------------------------------------------------------------------------------------------
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
