"""Turn the run's completed reviews into the day's augmented manifest."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import AirflowException

from active_learning.assets import record_asset_events
from active_learning.hooks.s3_lines import S3ClientHook, S3JsonLinesWriter, iter_json_lines
from active_learning.lineage import augmented_manifest_lineage
from active_learning.operators.base import ReviewTaskMixin

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage


class AugmentedManifestOperator(ReviewTaskMixin, AwsBaseOperator[S3ClientHook]):
    """Convert each completed review of the run into a manifest line; write ``runs/<day>/augmented.manifest``.

    The run's review backend reads the answers of the reviews the run recorded
    (``runs/<day>/human-loops.jsonl``), each for the image of its record, and the domain core
    converts them; lines are written as they come. Every review gets a line in
    ``runs/<day>/manifest-report.jsonl``: ``converted``, ``skipped`` (no box to train on, or the
    review did not complete) or ``error`` with the reason; an error does not fail the other
    reviews. Boxes left out (unknown label, no area in the image) are listed in the line's
    ``dropped_boxes``. A review is an error when its answer lies outside where the backend writes,
    its image outside the loop's bucket and prefix, or when its reviewers saw another image size
    than ``runs/<day>/predictions.jsonl`` records.

    :param settings: the loop settings (see :class:`active_learning.settings.LoopSettings`).
    :param day: the day to process, ``YYYY-MM-DD``.
    :param review_conn_id: the connection of a review backend outside AWS.
    :param concurrency: answers read at once.
    """

    aws_hook_class = S3ClientHook
    template_fields: Sequence[str] = aws_template_fields("settings", "day")
    template_fields_renderers = {"settings": "json"}

    def __init__(
        self, *, settings: Mapping[str, Any] | str, day: str, concurrency: int = 8, **kwargs: Any
    ) -> None:
        super().__init__(concurrency=concurrency, **kwargs)
        self.settings = settings
        self.day = day

    def execute(self, context: Any) -> dict[str, Any]:
        settings, day = self.loop_settings, self.run_day
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

        records = iter_json_lines(
            self.s3, settings.bucket, settings.run_key(day, "human-loops.jsonl"), missing_ok=True
        )
        results = self.backend.harvest(records, predicted_size)
        outcomes: Counter[str] = Counter()
        dropped_boxes = 0
        # with several workers per image: the share who agreed on each kept box
        agreements: list[float] = []
        metadata_key = f"{settings.label_attribute}-metadata"
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
                    if settings.task_count > 1:
                        agreements += [
                            box["confidence"] for box in line.get(metadata_key, {}).get("objects", [])
                        ]
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
            "agreement": round(sum(agreements) / len(agreements), 4) if agreements else None,
            "manifest_uri": manifest.uri,
            "report_uri": report.uri,
        }
        self.log.info("Augmented manifest of %s: %s", day, result)
        record_asset_events(
            context, self.outlets, {"day": day, "uri": manifest.uri, "lines": outcomes["converted"]}
        )
        return result

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage (called by its provider, when installed, after the task ran): the day's review
        records and predictions, and A2I's output prefix, in; ``augmented.manifest`` out.

        :param task_instance: the task instance that ran.
        """
        return augmented_manifest_lineage(self.loop_settings, self.run_day, task_instance)
