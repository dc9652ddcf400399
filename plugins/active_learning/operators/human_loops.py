"""Start one A2I human loop per image routed to review, pre-filled with the model's boxes."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields

from active_learning.concurrency import bounded_map
from active_learning.detections import Detection, to_pixel_boxes
from active_learning.hooks.a2i import A2IRuntimeHook
from active_learning.links.console import FlowDefinitionLink
from active_learning.naming import human_loop_name, human_loop_prefix
from active_learning.operators.base import (
    LoopOperatorMixin,
    concurrent_client_config,
    iter_json_lines,
    put_json_lines,
)

MAX_INPUT_CONTENT_CHARS = 3_145_728
# Loops are listed by creation time later; the margin covers clock skew between here and AWS.
CLOCK_SKEW = timedelta(minutes=5)


class StartHumanLoopsOperator(LoopOperatorMixin, AwsBaseOperator[A2IRuntimeHook]):
    """Start a human loop for each image ``predictions.jsonl`` routes to review.

    InputContent is ``{"taskObject", "labels", "initialValue": [pixel boxes]}``. Loop names derive
    from the run day and the image URI, so a retry or a clear-and-rerun adopts the loops already
    started (``ConflictException``) instead of starting them twice; throttling is retried by botocore.
    Writes ``runs/<day>/human-loops.jsonl``.

    :param settings: the loop settings (see :class:`active_learning.settings.LoopSettings`).
    :param day: the day to process, ``YYYY-MM-DD``.
    :param flow_definition_arn: the flow definition the loops run under.
    :param concurrency: ``StartHumanLoop`` calls in flight at most.
    :param initial_box_min_score: model boxes scoring below this are not shown to reviewers.
    :param max_initial_boxes: at most this many model boxes are shown (the highest scoring).
    """

    aws_hook_class = A2IRuntimeHook
    template_fields: Sequence[str] = aws_template_fields("settings", "day", "flow_definition_arn")
    operator_extra_links = (FlowDefinitionLink(),)

    def __init__(
        self,
        *,
        settings: Mapping[str, Any] | str,
        day: str,
        flow_definition_arn: str,
        concurrency: int = 4,
        initial_box_min_score: float = 0.2,
        max_initial_boxes: int = 50,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("botocore_config", concurrent_client_config(concurrency))
        super().__init__(**kwargs)
        self.settings = settings
        self.day = day
        self.flow_definition_arn = flow_definition_arn
        self.concurrency = concurrency
        self.initial_box_min_score = initial_box_min_score
        self.max_initial_boxes = max_initial_boxes

    def input_content(self, record: Mapping[str, Any], class_names: Sequence[str]) -> str:
        detections = [Detection.from_list(row) for row in record["detections"]][: self.max_initial_boxes]
        boxes = to_pixel_boxes(
            detections, record["width"], record["height"], class_names, self.initial_box_min_score
        )
        content = json.dumps(
            {"taskObject": record["source"], "labels": list(class_names), "initialValue": boxes}
        )
        if len(content) > MAX_INPUT_CONTENT_CHARS:
            raise ValueError(
                f"InputContent for {record['source']} has {len(content)} characters, over A2I's limit"
            )
        return content

    def execute(self, context: Any) -> dict[str, Any]:
        settings, day = self.loop_settings, self.run_day
        task_start = datetime.now(UTC)
        FlowDefinitionLink.persist(
            context=context,
            operator=self,
            region_name=self.hook.conn_region_name,
            aws_partition=self.hook.conn_partition,
            flow_definition_name=self.flow_definition_arn.rsplit("/", 1)[-1],
        )
        self.hook.get_conn()  # create the client once, before the worker threads share it
        key = settings.run_key(day, "human-loops.jsonl")
        # Loops an earlier try or run of this day started: kept even if a rerun routes other images,
        # so that none is lost (their answers are still harvested and counted).
        earlier = {
            loop["name"]: loop for loop in iter_json_lines(self.s3, settings.bucket, key, missing_ok=True)
        }
        try_number = getattr(context.get("ti"), "try_number", 1)
        may_exist = bool(earlier) or (isinstance(try_number, int) and try_number > 1)

        def reviews() -> Iterator[dict[str, Any]]:
            predictions = iter_json_lines(
                self.s3, settings.bucket, settings.run_key(day, "predictions.jsonl")
            )
            return (record for record in predictions if record["review"])

        def start(record: dict[str, Any]) -> dict[str, Any]:
            name = human_loop_name(settings.resource_prefix, day, record["source"])
            outcome = self.hook.start_human_loop(
                name, self.flow_definition_arn, self.input_content(record, settings.class_names)
            )
            created = outcome.pop("creation_time", None)
            if created is None and may_exist:
                # A2I answers a repeated start with the same input like a new one: ask when it was created
                created = self.hook.describe_human_loop(name)["CreationTime"]
            started = outcome["started"] and (created is None or created >= task_start - CLOCK_SKEW)
            return {
                "name": name,
                "source": record["source"],
                "reason": record["reason"],
                **outcome,
                "started": started,
                "created": (created or task_start).isoformat(),
            }

        loops = {loop["name"]: loop for _, loop in bounded_map(start, reviews(), self.concurrency)}
        carried = [loop for name, loop in earlier.items() if name not in loops]
        for loop in carried:
            self.log.warning("Keeping loop %s of an earlier try: its image is no longer routed", loop["name"])
            created = (
                loop.get("created") or self.hook.describe_human_loop(loop["name"])["CreationTime"].isoformat()
            )
            loops[loop["name"]] = {**loop, "started": False, "created": created}
        records = sorted(loops.values(), key=lambda loop: loop["name"])
        put_json_lines(self.s3, settings.bucket, key, records)
        started = sum(loop["started"] for loop in records)
        self.log.info(
            "%d human loops: %d started now, %d from an earlier try",
            len(records),
            started,
            len(records) - started,
        )
        created = [datetime.fromisoformat(loop["created"]) for loop in records if loop.get("created")]
        return {
            "loops": len(records),
            "started": started,
            "adopted": len(records) - started,
            "human_loops_uri": f"s3://{settings.bucket}/{key}",
            "name_prefix": human_loop_prefix(settings.resource_prefix, day),
            # the sensor lists loops created in this window only: a few calls, whatever other runs do
            "created_after": (min([task_start, *created]) - CLOCK_SKEW).isoformat(),
            "created_before": (datetime.now(UTC) + CLOCK_SKEW).isoformat(),
            "flow_definition_arn": self.flow_definition_arn,
        }
