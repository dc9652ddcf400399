"""Ask for a review of each image routed to review, pre-filled with the model's boxes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields

from active_learning.hooks.s3_lines import S3ClientHook, iter_json_lines
from active_learning.links.review import ReviewLink
from active_learning.naming import human_loop_name
from active_learning.operators.base import ReviewTaskMixin, as_mapping
from active_learning.reviews import ReviewRequest


class StartHumanLoopsOperator(ReviewTaskMixin, AwsBaseOperator[S3ClientHook]):
    """Start a review (A2I: a human loop; Label Studio: a task) for each image ``predictions.jsonl``
    routes to review, through the run's review backend.

    Each review shows the image with the model's boxes (in pixels, the most confident first) and is
    named from the run day and the image URI. The backend adopts the reviews an earlier try or run
    of the day started, instead of starting them twice, and keeps those whose images are no longer
    routed, so that every paid review is harvested. Writes ``runs/<day>/human-loops.jsonl``, every
    review of the day, and returns what the wait needs.

    :param settings: the loop settings (see :class:`active_learning.settings.LoopSettings`).
    :param day: the day to process, ``YYYY-MM-DD``.
    :param review_set_up: what the set-up task returned.
    :param review_conn_id: the connection of a review backend outside AWS.
    :param concurrency: reviews started at once at most.

    Which of the model's boxes reviewers see: the settings ``initial_box_min_score`` and
    ``max_initial_boxes``.
    """

    aws_hook_class = S3ClientHook
    template_fields: Sequence[str] = aws_template_fields("settings", "day", "review_set_up")
    template_fields_renderers = {"settings": "json", "review_set_up": "json"}
    operator_extra_links = (ReviewLink(),)

    def __init__(
        self,
        *,
        settings: Mapping[str, Any] | str,
        day: str,
        review_set_up: Mapping[str, Any] | str,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.day = day
        self.review_set_up = review_set_up

    def requests(self) -> Iterator[ReviewRequest]:
        """The day's images routed to review, as the reviewers will see them."""
        settings, day = self.loop_settings, self.run_day
        for record in iter_json_lines(self.s3, settings.bucket, settings.run_key(day, "predictions.jsonl")):
            if record["review"]:
                yield ReviewRequest.from_prediction(
                    human_loop_name(settings.resource_prefix, day, record["source"]),
                    record,
                    settings.class_names,
                    settings.initial_box_min_score,
                    settings.max_initial_boxes,
                )

    def execute(self, context: Any) -> dict[str, Any]:
        set_up = as_mapping(self.review_set_up, "review_set_up")
        return self.backend.start(self.requests(), set_up, context)
