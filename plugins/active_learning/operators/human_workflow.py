"""Set up the run's review: whatever the review backend needs before reviews start, idempotently."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import conf

from active_learning.hooks.s3_lines import S3ClientHook
from active_learning.links.review import ReviewLink
from active_learning.operators.base import ReviewTaskMixin
from active_learning.operators.waiting import WaitOrDeferMixin
from active_learning.review_backends.base import ReviewUi

DEFAULT_TEMPLATE = Path(__file__).parents[3] / "include" / "templates" / "bounding-box.liquid.html"


class CreateHumanReviewWorkflowOperator(WaitOrDeferMixin, ReviewTaskMixin, AwsBaseOperator[S3ClientHook]):
    """Make sure the run's review backend is ready (A2I: the worker task UI and an Active flow
    definition; Label Studio: the project) and return its whole set-up result for the start task.

    Names come from a hash of what the reviewers see and of the settings, so a retry adopts what the
    first try created and a changed setting makes a new workflow (A2I's are immutable).

    :param settings: the loop settings (see :class:`active_learning.settings.LoopSettings`).
    :param template_path: the worker task template (Liquid HTML), for a backend that takes one.
    :param task_title: the task's title as reviewers see it.
    :param task_description: the task's description as reviewers see it.
    :param review_conn_id: the connection of a review backend outside AWS.
    :param deferrable: wait in the triggerer rather than in a worker slot.
    :param waiter_delay: seconds between status checks.
    :param waiter_max_attempts: status checks before failing.
    """

    aws_hook_class = S3ClientHook
    template_fields: Sequence[str] = aws_template_fields("settings", "task_title", "task_description")
    template_fields_renderers = {"settings": "json"}
    operator_extra_links = (ReviewLink(),)
    ui_color = "#f3e5ab"

    def __init__(
        self,
        *,
        settings: Mapping[str, Any] | str,
        template_path: str | Path = DEFAULT_TEMPLATE,
        task_title: str = "Review object detection boxes",
        task_description: str = "Correct the model's boxes around objects of the listed classes",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        waiter_delay: int = 10,
        waiter_max_attempts: int = 60,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.template_path = str(template_path)
        self.task_title = task_title
        self.task_description = task_description
        self.deferrable = deferrable
        self.waiter_delay = waiter_delay
        self.waiter_max_attempts = waiter_max_attempts

    def execute(self, context: Any) -> dict[str, Any]:
        ui = ReviewUi(self.template_path, self.task_title, self.task_description)
        return self.backend.set_up(context, ui)

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.backend.set_up_complete(context, event)
