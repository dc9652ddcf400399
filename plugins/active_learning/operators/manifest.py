"""Turn the run's completed human loops into the day's augmented manifest."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import AirflowException

from active_learning.assets import record_asset_events
from active_learning.concurrency import bounded_map
from active_learning.hooks.a2i import A2IRuntimeHook
from active_learning.hooks.label_studio import LabelStudioHook
from active_learning.hooks.retries import client_config
from active_learning.hooks.s3_lines import S3JsonLinesWriter, iter_json_lines
from active_learning.manifest import ManifestConversionError, convert_a2i_output
from active_learning.operators.base import LoopOperatorMixin
from active_learning.review_backends.label_studio import LabelStudioConnectionMixin, harvest
from active_learning.settings import split_s3_uri


class AugmentedManifestOperator(
    LabelStudioConnectionMixin, LoopOperatorMixin, AwsBaseOperator[A2IRuntimeHook]
):
    """Convert each completed loop's A2I output into a manifest line; write ``runs/<day>/augmented.manifest``.

    Outputs are read concurrently and lines written as they come. Every loop gets a line in
    ``runs/<day>/manifest-report.jsonl``: ``converted``, ``skipped`` (no box to train on, or the
    loop did not complete) or ``error`` with the reason; an error does not fail the other loops.
    Boxes left out (unknown label, no area in the image) are listed in the line's ``dropped_boxes``.
    A loop is an error when its output lies outside ``a2i-output/``, its image outside the loop's
    bucket and prefix, or when its reviewers saw another image size than ``runs/<day>/predictions.jsonl``
    records. When the run's ``review_backend`` is ``label_studio``, the day's recorded tasks are read
    from Label Studio (100 per call) and converted by the same core, into the same files.

    :param settings: the loop settings (see :class:`active_learning.settings.LoopSettings`).
    :param day: the day to process, ``YYYY-MM-DD``.
    :param concurrency: loops read at once.
    """

    aws_hook_class = A2IRuntimeHook
    template_fields: Sequence[str] = aws_template_fields("settings", "day")

    def __init__(
        self, *, settings: Mapping[str, Any] | str, day: str, concurrency: int = 8, **kwargs: Any
    ) -> None:
        kwargs.setdefault("botocore_config", client_config(concurrency))
        super().__init__(**kwargs)
        self.settings = settings
        self.day = day
        self.concurrency = concurrency

    def execute(self, context: Any) -> dict[str, Any]:
        settings, day = self.loop_settings, self.run_day
        s3 = self.s3.get_conn()
        self.hook.get_conn()  # create the client once, before the worker threads share it

        sizes = {  # a transform job's day has sizes for the images routed to review only
            prediction["source"]: (prediction["width"], prediction["height"])
            for prediction in iter_json_lines(
                self.s3, settings.bucket, settings.run_key(day, "predictions.jsonl"), missing_ok=True
            )
            if "width" in prediction
        }

        def predicted_size(source_ref: str) -> tuple[int, int] | None:
            settings.check_inside(source_ref, "source-ref")
            return sizes.get(source_ref)

        def convert(loop: dict[str, Any]) -> dict[str, Any]:
            report = {"name": loop["name"], "source": loop["source"]}
            try:
                described = self.hook.describe_human_loop(loop["name"])
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

        loops = iter_json_lines(
            self.s3, settings.bucket, settings.run_key(day, "human-loops.jsonl"), missing_ok=True
        )
        if settings.review_backend == "label_studio":
            records = list(loops)
            projects = {record["project_id"] for record in records if record.get("project_id") is not None}
            results: Iterator[dict[str, Any]] = (
                result
                for project_id in sorted(projects)
                for result in harvest(
                    LabelStudioHook(self.label_studio_conn_id),
                    settings,
                    project_id,
                    day.isoformat(),
                    [record for record in records if record.get("project_id") == project_id],
                    predicted_size,
                )
            )
        else:
            results = (result for _, result in bounded_map(convert, loops, self.concurrency))
        outcomes: Counter[str] = Counter()
        dropped_boxes = 0
        manifest = S3JsonLinesWriter(self.s3, settings.bucket, settings.run_key(day, "augmented.manifest"))
        report = S3JsonLinesWriter(self.s3, settings.bucket, settings.run_key(day, "manifest-report.jsonl"))
        with manifest, report:
            for result in results:
                outcomes[result["outcome"]] += 1
                dropped_boxes += len(result.get("dropped_boxes", ()))
                line = result.pop("line", None)
                if result.get("dropped_boxes"):
                    self.log.warning(
                        "Loop %s: %d box(es) left out: %s",
                        result["name"],
                        len(result["dropped_boxes"]),
                        "; ".join(dropped["reason"] for dropped in result["dropped_boxes"]),
                    )
                if line is not None:
                    manifest.write(line)
                else:
                    self.log.warning("Loop %s %s: %s", result["name"], result["outcome"], result["reason"])
                report.write(result)
        if outcomes["error"] and outcomes["error"] == sum(outcomes.values()):
            # every loop failed the same way: access or configuration, not the reviewers' data
            raise AirflowException(f"No loop output could be read or converted; see {report.uri}")
        result = {
            "converted": outcomes["converted"],
            "skipped": outcomes["skipped"],
            "errored": outcomes["error"],
            "dropped_boxes": dropped_boxes,
            "manifest_uri": manifest.uri,
            "report_uri": report.uri,
        }
        self.log.info("Augmented manifest of %s: %s", day, result)
        record_asset_events(
            context, self.outlets, {"day": day, "uri": manifest.uri, "lines": outcomes["converted"]}
        )
        return result
