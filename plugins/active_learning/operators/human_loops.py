"""Start one A2I human loop per image routed to review, pre-filled with the model's boxes."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields

from active_learning.concurrency import bounded_map
from active_learning.detections import Detection, to_pixel_boxes
from active_learning.hooks.a2i import A2IRuntimeHook
from active_learning.hooks.models import ModelLineageHook
from active_learning.hooks.retries import client_config
from active_learning.hooks.s3_lines import iter_json_lines, iter_keys, put_json_lines
from active_learning.links.console import FlowDefinitionLink
from active_learning.naming import human_loop_arn, human_loop_name, human_loop_prefix
from active_learning.operators.base import LoopOperatorMixin
from active_learning.review_backends.label_studio import LabelStudioConnectionMixin
from active_learning.settings import LoopSettings

MAX_INPUT_CONTENT_CHARS = 3_145_728
# Loops are listed by creation time later; the margin covers clock skew between here and AWS.
CLOCK_SKEW = timedelta(minutes=5)


class StartHumanLoopsOperator(LabelStudioConnectionMixin, LoopOperatorMixin, AwsBaseOperator[A2IRuntimeHook]):
    """Start a human loop for each image ``predictions.jsonl`` routes to review.

    InputContent is ``{"taskObject", "labels", "initialValue": [pixel boxes]}``. Loop names derive
    from the run day and the image URI. Before starting, the day's earlier loops are found in A2I
    itself (one paged ``ListHumanLoops`` of the flow definition since the day began), in the day's
    file and in per-loop markers (``runs/<day>/human-loops/<name>.json``, written as each loop
    starts): a retry, a clear-and-rerun or a rerun after a kill adopts them instead of starting them
    twice, and keeps those whose images are no longer routed, so that every paid review is harvested.
    Throttling is retried by botocore. Writes ``runs/<day>/human-loops.jsonl``, every loop of the day.

    When the run's ``review_backend`` is ``label_studio``, imports one Label Studio task per routed
    image instead (the model's boxes as a prediction of the serving model; tasks already imported for
    the day are adopted by name) and records them in the same file.

    :param settings: the loop settings (see :class:`active_learning.settings.LoopSettings`).
    :param day: the day to process, ``YYYY-MM-DD``.
    :param flow_definition_arn: the flow definition the loops run under (unused with Label Studio).
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
        kwargs.setdefault("botocore_config", client_config(concurrency))
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
        if settings.review_backend == "label_studio":
            serving = ModelLineageHook(**self._hook_parameters).serving_model(settings.endpoint_name)
            return self.label_studio(settings).start(
                day,
                self._predictions(settings, day),
                serving.model_name if serving else "none",
                self.initial_box_min_score,
                self.max_initial_boxes,
            )
        task_start = datetime.now(UTC)
        self.persist_link(
            FlowDefinitionLink, context, flow_definition_name=self.flow_definition_arn.rsplit("/", 1)[-1]
        )
        self.hook.get_conn()  # create the client once, before the worker threads share it
        key = settings.run_key(day, "human-loops.jsonl")
        markers = settings.run_key(day, "human-loops") + "/"
        earlier = self._earlier_loops(settings, day, key, markers, task_start)

        def reviews() -> Iterator[dict[str, Any]]:
            return (record for record in self._predictions(settings, day) if record["review"])

        def start(record: dict[str, Any]) -> dict[str, Any]:
            name = human_loop_name(settings.resource_prefix, day, record["source"])
            known = earlier.get(name)
            if known is not None and known.get("flow_definition_arn") == self.flow_definition_arn:
                return {**known, "source": record["source"], "reason": record["reason"], "started": False}
            outcome = self.hook.start_human_loop(
                name, self.flow_definition_arn, self.input_content(record, settings.class_names)
            )
            created = outcome.pop("creation_time", None)
            loop = {
                "name": name,
                "source": record["source"],
                "reason": record["reason"],
                **outcome,
                "created": (created or datetime.now(UTC)).isoformat(),
                "flow_definition_arn": self.flow_definition_arn,
            }
            # recorded as soon as it exists: a kill before the day's file is written loses no loop
            put_json_lines(self.s3, settings.bucket, f"{markers}{name}.json", [loop])
            return loop

        loops = {loop["name"]: loop for _, loop in bounded_map(start, reviews(), self.concurrency)}
        carried = [loop for name, loop in earlier.items() if name not in loops]
        if carried:
            self.log.warning(
                "Keeping %d loops of an earlier try or run whose images are no longer routed: "
                "their answers are still harvested",
                len(carried),
            )
        unknown = [loop for loop in carried if not loop["source"]]
        sources = self._sources_by_loop_name(settings, day) if unknown else {}
        for loop in carried:
            loops[loop["name"]] = {
                **loop,
                "source": loop["source"] or sources.get(loop["name"]),
                "started": False,
            }
        records = sorted(loops.values(), key=lambda loop: loop["name"])
        put_json_lines(self.s3, settings.bucket, key, records)
        started = sum(loop["started"] for loop in records)
        self.log.info(
            "%d human loops: %d started now, %d from an earlier try or run",
            len(records),
            started,
            len(records) - started,
        )
        created = [datetime.fromisoformat(loop["created"]) for loop in records]
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

    def _predictions(self, settings: LoopSettings, day: date) -> Iterator[dict[str, Any]]:
        return iter_json_lines(self.s3, settings.bucket, settings.run_key(day, "predictions.jsonl"))

    def _earlier_loops(
        self, settings: LoopSettings, day: date, key: str, markers: str, task_start: datetime
    ) -> dict[str, dict[str, Any]]:
        """Every loop an earlier try or run of the day started, by name, whatever killed it.

        From A2I itself (the flow definition's loops created since the day began, by the day's name
        prefix: exact creation times, even for loops whose start was never recorded), the day's file,
        and the per-loop markers written as each loop started (loops under another flow definition).
        """
        earlier: dict[str, dict[str, Any]] = {}
        for loop in iter_json_lines(self.s3, settings.bucket, key, missing_ok=True):
            earlier[loop["name"]] = {"flow_definition_arn": None, **loop}
        for marker_key in iter_keys(self.s3.get_conn(), settings.bucket, markers):
            name = marker_key[len(markers) :].removesuffix(".json")
            if name not in earlier:
                earlier.update(
                    (loop["name"], loop) for loop in iter_json_lines(self.s3, settings.bucket, marker_key)
                )
        prefix = human_loop_prefix(settings.resource_prefix, day)
        day_began = datetime.combine(day, time.min, UTC) - CLOCK_SKEW
        for summary in self.hook.list_human_loops(
            self.flow_definition_arn, min(day_began, task_start - CLOCK_SKEW), datetime.now(UTC) + CLOCK_SKEW
        ):
            name = summary["HumanLoopName"]
            if not name.startswith(prefix):
                continue
            earlier[name] = {
                "name": name,
                "source": earlier.get(name, {}).get("source"),
                "reason": earlier.get(name, {}).get("reason", "started by an earlier try or run"),
                "arn": human_loop_arn(self.flow_definition_arn, name),  # summaries carry no loop ARN
                "created": summary["CreationTime"].isoformat(),
                "flow_definition_arn": self.flow_definition_arn,
            }
        return earlier

    def _sources_by_loop_name(self, settings: LoopSettings, day: date) -> dict[str, str]:
        """Image URIs by loop name, for every image of the day (routed or not)."""
        return {
            human_loop_name(settings.resource_prefix, day, record["source"]): record["source"]
            for record in self._predictions(settings, day)
        }
