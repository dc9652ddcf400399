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
from active_learning.operators.base import LoopOperatorMixin, iter_json_lines, put_json_lines

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
        kwargs.setdefault("botocore_config", {"retries": {"mode": "adaptive", "max_attempts": 10}})
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
        earliest = datetime.now(UTC)
        FlowDefinitionLink.persist(
            context=context,
            operator=self,
            region_name=self.hook.conn_region_name,
            aws_partition=self.hook.conn_partition,
            flow_definition_name=self.flow_definition_arn.rsplit("/", 1)[-1],
        )
        self.hook.get_conn()  # create the client once, before the worker threads share it

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
            return {"name": name, "source": record["source"], "reason": record["reason"], **outcome}

        loops: list[dict[str, Any]] = []
        for _, loop in bounded_map(start, reviews(), self.concurrency):
            if not loop["started"]:
                earliest = min(earliest, loop.pop("creation_time"))
            loops.append(loop)
        loops.sort(key=lambda loop: loop["name"])
        key = settings.run_key(day, "human-loops.jsonl")
        put_json_lines(self.s3, settings.bucket, key, loops)
        started = sum(loop["started"] for loop in loops)
        self.log.info(
            "%d human loops: %d started, %d adopted from an earlier try",
            len(loops),
            started,
            len(loops) - started,
        )
        return {
            "loops": len(loops),
            "started": started,
            "adopted": len(loops) - started,
            "human_loops_uri": f"s3://{settings.bucket}/{key}",
            "name_prefix": human_loop_prefix(settings.resource_prefix, day),
            "created_after": (earliest - CLOCK_SKEW).isoformat(),
            "flow_definition_arn": self.flow_definition_arn,
        }
