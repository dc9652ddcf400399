"""Amazon Augmented AI (A2I) reviews: a task UI and flow definition, one human loop per image, the
loops' status listings, and their outputs in S3.

Names derive from the run day and the image URI (loops) or from a hash of the template and the
settings (task UI, flow definition), so that a retry or rerun adopts what an earlier one created.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, time, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

from airflow.providers.amazon.aws.utils import validate_execute_complete_event
from airflow.providers.common.compat.sdk import AirflowException

from active_learning.concurrency import bounded_map
from active_learning.hooks.a2i import A2IRuntimeHook
from active_learning.hooks.human_workflow import HumanWorkflowHook
from active_learning.hooks.s3_lines import iter_json_lines, iter_keys, put_json_lines
from active_learning.manifest import ManifestConversionError, convert_a2i_output
from active_learning.naming import (
    flow_definition_name,
    human_loop_arn,
    human_loop_name,
    human_loop_prefix,
    task_ui_name,
)
from active_learning.review_backends.base import PredictedSize, ReviewBackend, ReviewUi
from active_learning.reviews import ReviewProgress, ReviewRequest
from active_learning.settings import split_s3_uri
from active_learning.triggers.human_loops import HumanLoopTrigger
from active_learning.triggers.human_workflow import FlowDefinitionActiveTrigger

NAME = "a2i"
MAX_INPUT_CONTENT_CHARS = 3_145_728
# Loops are listed by creation time later; the margin covers clock skew between here and AWS.
CLOCK_SKEW = timedelta(minutes=5)
CONSOLE = "https://console.aws.amazon.com/a2i/home?region={region}#/human-review-workflows/{name}"


def input_content(request: ReviewRequest) -> str:
    """The loop's InputContent: ``{"taskObject", "labels", "initialValue": [pixel boxes]}``.

    :raises ValueError: over A2I's 3,145,728 characters.
    """
    content = json.dumps(
        {
            "taskObject": request.source,
            "labels": list(request.class_names),
            "initialValue": list(request.boxes),
        }
    )
    if len(content) > MAX_INPUT_CONTENT_CHARS:
        raise ValueError(f"InputContent for {request.source} has {len(content)} characters, over A2I's limit")
    return content


class A2IReview(ReviewBackend):
    """Reviews by a private workteam through A2I (setting ``workteam_arn``; the task's AWS connection).

    Set-up: the worker task UI (the set-up task's ``template_path``) and the flow definition, waited
    for until Active. Start: a human loop per image, after finding the day's earlier loops in A2I
    itself (one paged ``ListHumanLoops`` of the flow definition since the day began), in the day's
    file and in the per-loop markers (``runs/<day>/human-loops/<name>.json``, written as each loop
    starts): a retry, a clear-and-rerun or a rerun after a kill adopts them, and keeps those whose
    images are no longer routed, so that every paid review is harvested. Wait: ``ListHumanLoops``
    over the run's creation-time window (10 calls for 1,000 loops). Harvest: each completed loop's
    ``output.json``, which must lie under ``a2i-output/``.
    """

    name = NAME

    @cached_property
    def runtime(self) -> A2IRuntimeHook:
        return self.task.aws_hook(A2IRuntimeHook)

    # set up --------------------------------------------------------------------------------------
    def set_up(self, context: Any, ui: ReviewUi) -> dict[str, Any]:
        settings, task = self.settings, self.task
        workflow: HumanWorkflowHook = task.aws_hook(HumanWorkflowHook)
        template = Path(ui.template_path).read_text(encoding="utf-8")
        ui_name = task_ui_name(settings.resource_prefix, template)
        ui_arn = workflow.ensure_task_ui(ui_name, template)
        request = {
            "HumanLoopConfig": {
                "WorkteamArn": settings.workteam_arn,
                "HumanTaskUiArn": ui_arn,
                "TaskTitle": ui.title,
                "TaskDescription": ui.description,
                "TaskCount": settings.task_count,
                "TaskAvailabilityLifetimeInSeconds": settings.task_availability_seconds,
                "TaskTimeLimitInSeconds": settings.task_time_limit_seconds,
            },
            "OutputConfig": {"S3OutputPath": settings.a2i_output_uri},
            "RoleArn": settings.role_arn,
        }
        name = flow_definition_name(settings.resource_prefix, ui_name, request)
        described = workflow.ensure_flow_definition(name, request)
        task.persist_review_link(context, CONSOLE.format(region=workflow.conn_region_name, name=name))
        if described["FlowDefinitionStatus"] == "Initializing":
            err = task.wait_or_defer(
                FlowDefinitionActiveTrigger,
                {"flow_definition_name": name},
                "FlowDefinitionActive",
                {"FlowDefinitionName": name},
                waiter_hook=workflow,
            )
            if err is not None:
                task.log.warning("Flow definition %s: %s", name, err)
            described = workflow.describe_flow_definition(name) or described
        return self._set_up_result(described)

    def set_up_complete(self, context: Any, event: Mapping[str, Any] | None) -> dict[str, Any]:
        validated = validate_execute_complete_event(dict(event) if event is not None else None)
        name = validated["flow_definition_name"]
        if validated["status"] != "success":
            raise AirflowException(f"Flow definition {name} is not Active: {validated.get('message')}")
        described = self.task.aws_hook(HumanWorkflowHook).describe_flow_definition(name)
        if described is None:
            raise AirflowException(f"Flow definition {name} disappeared while waiting for it")
        return self._set_up_result(described)

    @staticmethod
    def _set_up_result(described: Mapping[str, Any]) -> dict[str, Any]:
        status = described["FlowDefinitionStatus"]
        if status == "Initializing":
            raise AirflowException(
                f"Flow definition {described['FlowDefinitionName']} is still Initializing after waiting; "
                "retry the task to wait longer"
            )
        if status != "Active":
            raise AirflowException(
                f"Flow definition {described['FlowDefinitionName']} is {status}: "
                f"{described.get('FailureReason', 'no reason given')}. Delete it or change a setting "
                "(the name derives from the template and settings) and retry."
            )
        return {
            "review_backend": NAME,
            "flow_definition_name": described["FlowDefinitionName"],
            "flow_definition_arn": described["FlowDefinitionArn"],
            "human_task_ui_arn": described["HumanLoopConfig"]["HumanTaskUiArn"],
        }

    # start ---------------------------------------------------------------------------------------
    def start(
        self, requests: Iterable[ReviewRequest], set_up: Mapping[str, Any], context: Any
    ) -> dict[str, Any]:
        settings, day, task = self.settings, self.task.run_day, self.task
        flow_arn = set_up["flow_definition_arn"]
        task_start = datetime.now(UTC)
        task.persist_review_link(
            context,
            CONSOLE.format(region=self.runtime.conn_region_name, name=set_up["flow_definition_name"]),
        )
        self.runtime.get_conn()  # create the client once, before the worker threads share it
        key = settings.run_key(day, "human-loops.jsonl")
        markers = settings.run_key(day, "human-loops") + "/"
        earlier = self._earlier_loops(flow_arn, key, markers, task_start)

        def start(request: ReviewRequest) -> dict[str, Any]:
            known = earlier.get(request.name)
            if known is not None and known.get("flow_definition_arn") == flow_arn:
                return {**known, "source": request.source, "reason": request.reason, "started": False}
            outcome = self.runtime.start_human_loop(request.name, flow_arn, input_content(request))
            created = outcome.pop("creation_time", None)
            loop = {
                "name": request.name,
                "source": request.source,
                "reason": request.reason,
                **outcome,
                "created": (created or datetime.now(UTC)).isoformat(),
                "flow_definition_arn": flow_arn,
            }
            # recorded as soon as it exists: a kill before the day's file is written loses no loop
            put_json_lines(task.s3, settings.bucket, f"{markers}{request.name}.json", [loop])
            return loop

        loops = {loop["name"]: loop for _, loop in bounded_map(start, requests, task.concurrency)}
        carried = [loop for name, loop in earlier.items() if name not in loops]
        if carried:
            task.log.warning(
                "Keeping %d loops of an earlier try or run whose images are no longer routed: "
                "their answers are still harvested",
                len(carried),
            )
        unknown = [loop for loop in carried if not loop["source"]]
        sources = self._sources_by_loop_name() if unknown else {}
        for loop in carried:
            loops[loop["name"]] = {
                **loop,
                "source": loop["source"] or sources.get(loop["name"]),
                "started": False,
            }
        records = sorted(loops.values(), key=lambda loop: loop["name"])
        put_json_lines(task.s3, settings.bucket, key, records)
        started = sum(loop["started"] for loop in records)
        task.log.info(
            "%d human loops: %d started now, %d from an earlier try or run",
            len(records),
            started,
            len(records) - started,
        )
        created = [datetime.fromisoformat(loop["created"]) for loop in records]
        return {
            "review_backend": NAME,
            "loops": len(records),
            "started": started,
            "adopted": len(records) - started,
            "human_loops_uri": f"s3://{settings.bucket}/{key}",
            # the wait lists loops created in this window only: a few calls, whatever other runs do
            "created_after": (min([task_start, *created]) - CLOCK_SKEW).isoformat(),
            "created_before": (datetime.now(UTC) + CLOCK_SKEW).isoformat(),
            "flow_definition_arn": flow_arn,
        }

    def _earlier_loops(
        self, flow_arn: str, key: str, markers: str, task_start: datetime
    ) -> dict[str, dict[str, Any]]:
        """Every loop an earlier try or run of the day started, by name, whatever killed it.

        From A2I itself (the flow definition's loops created since the day began, by the day's name
        prefix: exact creation times, even for loops whose start was never recorded), the day's file,
        and the per-loop markers written as each loop started (loops under another flow definition).
        """
        settings, day, s3 = self.settings, self.task.run_day, self.task.s3
        earlier: dict[str, dict[str, Any]] = {}
        for loop in iter_json_lines(s3, settings.bucket, key, missing_ok=True):
            earlier[loop["name"]] = {"flow_definition_arn": None, **loop}
        for marker_key in iter_keys(s3.get_conn(), settings.bucket, markers):
            name = marker_key[len(markers) :].removesuffix(".json")
            if name not in earlier:
                earlier.update(
                    (loop["name"], loop) for loop in iter_json_lines(s3, settings.bucket, marker_key)
                )
        prefix = human_loop_prefix(settings.resource_prefix, day)
        day_began = datetime.combine(day, time.min, UTC) - CLOCK_SKEW
        for summary in self.runtime.list_human_loops(
            flow_arn, min(day_began, task_start - CLOCK_SKEW), datetime.now(UTC) + CLOCK_SKEW
        ):
            name = summary["HumanLoopName"]
            if not name.startswith(prefix):
                continue
            earlier[name] = {
                "name": name,
                "source": earlier.get(name, {}).get("source"),
                "reason": earlier.get(name, {}).get("reason", "started by an earlier try or run"),
                "arn": human_loop_arn(flow_arn, name),  # summaries carry no loop ARN
                "created": summary["CreationTime"].isoformat(),
                "flow_definition_arn": flow_arn,
            }
        return earlier

    def _sources_by_loop_name(self) -> dict[str, str]:
        """Image URIs by loop name, for every image of the day (routed or not)."""
        settings, day = self.settings, self.task.run_day
        predictions = iter_json_lines(
            self.task.s3, settings.bucket, settings.run_key(day, "predictions.jsonl")
        )
        return {
            human_loop_name(settings.resource_prefix, day, record["source"]): record["source"]
            for record in predictions
        }

    # wait ----------------------------------------------------------------------------------------
    def _summaries(self, started: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        return self.runtime.list_human_loops(
            started["flow_definition_arn"],
            datetime.fromisoformat(started["created_after"]),
            datetime.fromisoformat(started["created_before"]) if started.get("created_before") else None,
        )

    def progress(self, started: Mapping[str, Any], own: frozenset[str]) -> ReviewProgress:
        return ReviewProgress.from_summaries(self._summaries(started), own)

    def stop_open(self, started: Mapping[str, Any], own: frozenset[str]) -> int:
        open_loops = [
            summary["HumanLoopName"]
            for summary in self._summaries(started)
            if summary["HumanLoopName"] in own and summary["HumanLoopStatus"] == "InProgress"
        ]
        return sum(self.runtime.stop_human_loop(name) for name in open_loops)

    def trigger(self, started: Mapping[str, Any], **wait: Any) -> HumanLoopTrigger:
        return HumanLoopTrigger(
            flow_definition_arn=started["flow_definition_arn"],
            created_after=started["created_after"],
            created_before=started.get("created_before"),
            **wait,
        )

    # harvest -------------------------------------------------------------------------------------
    def harvest(
        self, records: Iterable[Mapping[str, Any]], predicted_size: PredictedSize
    ) -> Iterator[dict[str, Any]]:
        settings = self.settings
        s3 = self.task.s3.get_conn()
        self.runtime.get_conn()  # create the client once, before the worker threads share it

        def convert(loop: Mapping[str, Any]) -> dict[str, Any]:
            report = {"name": loop["name"], "source": loop["source"]}
            try:
                described = self.runtime.describe_human_loop(loop["name"])
                status = described["HumanLoopStatus"]
                if status != "Completed":
                    reason = described.get("FailureReason") or "no answer"
                    return {**report, "outcome": "skipped", "reason": f"loop is {status}: {reason}"}
                output_uri = settings.check_inside(
                    described["HumanLoopOutput"]["OutputS3Uri"],
                    f"the output of human loop {loop['name']!r}",
                    within=settings.a2i_output_uri,
                )
                bucket, key = split_s3_uri(output_uri)
                output = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
                conversion = convert_a2i_output(
                    output,
                    settings.class_names,
                    settings.label_attribute,
                    image_size=predicted_size,
                    recorded=(loop["name"], loop["source"]),
                    max_boxes=settings.max_boxes_per_image,
                )
            except Exception as err:  # one unusable loop is recorded with its reason; the others go on
                kind = "conversion" if isinstance(err, ManifestConversionError) else type(err).__name__
                return {**report, "outcome": "error", "reason": f"{kind}: {err}"}
            report["dropped_boxes"] = [dropped.to_dict() for dropped in conversion.dropped_boxes]
            if conversion.line is None:
                return {**report, "outcome": "skipped", "reason": "no box left to train on"}
            return {**report, "outcome": "converted", "line": conversion.line}

        return (result for _, result in bounded_map(convert, records, self.task.concurrency))
