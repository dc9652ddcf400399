"""Trigger waiting, in the triggerer, until a run's Label Studio tasks are done."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from active_learning.hooks.label_studio import LabelStudioHook
from active_learning.review_backends.label_studio import day_progress
from active_learning.reviews import ReviewProgress
from active_learning.triggers.review_wait import error_event, progress_events, read_own_loop_names


class LabelStudioReviewTrigger(BaseTrigger):
    """Page the project's tasks of the run day every ``poll_interval`` seconds until the run's are done.

    A check costs ``ceil(N / 100)`` listing calls for N tasks, plus one token exchange. Yields the
    same events as :class:`~active_learning.triggers.human_loops.HumanLoopTrigger`:
    ``{"status": "success" | "timeout" | "error", "progress": {...}}``.

    :param label_studio_conn_id: the Label Studio connection.
    :param project_id: the project of the run's tasks.
    :param day: the run day (the tasks' ``data.day``).
    :param human_loops_uri: the run's ``human-loops.jsonl``: only the tasks named there count.
    :param required_answers: submitted annotations that complete a task (the ``task_count`` setting).
    :param min_completed_fraction: share of completed tasks that is enough.
    :param deadline: ISO time after which a ``timeout`` event is sent.
    :param poll_interval: seconds between checks.
    """

    def __init__(
        self,
        *,
        label_studio_conn_id: str,
        project_id: int,
        day: str,
        human_loops_uri: str,
        required_answers: int,
        min_completed_fraction: float,
        deadline: str,
        poll_interval: float = 60,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict | None = None,
    ) -> None:
        super().__init__()
        self.label_studio_conn_id = label_studio_conn_id
        self.project_id = project_id
        self.day = day
        self.human_loops_uri = human_loops_uri
        self.required_answers = required_answers
        self.min_completed_fraction = min_completed_fraction
        self.deadline = deadline
        self.poll_interval = poll_interval
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.verify = verify
        self.botocore_config = botocore_config

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "label_studio_conn_id": self.label_studio_conn_id,
                "project_id": self.project_id,
                "day": self.day,
                "human_loops_uri": self.human_loops_uri,
                "required_answers": self.required_answers,
                "min_completed_fraction": self.min_completed_fraction,
                "deadline": self.deadline,
                "poll_interval": self.poll_interval,
                "aws_conn_id": self.aws_conn_id,
                "region_name": self.region_name,
                "verify": self.verify,
                "botocore_config": self.botocore_config,
            },
        )

    async def own_names(self) -> frozenset[str]:
        """The run's tasks, read once from its ``human-loops.jsonl``."""
        connection = {
            "aws_conn_id": self.aws_conn_id,
            "region_name": self.region_name,
            "verify": self.verify,
            "config": self.botocore_config,
        }
        return await read_own_loop_names(self.human_loops_uri, connection)

    def check(self, names: frozenset[str]) -> tuple[ReviewProgress, int]:
        """One check with a fresh hook (a fresh access token); returns the progress and the calls made."""
        hook = LabelStudioHook(self.label_studio_conn_id)
        progress = day_progress(hook, self.project_id, self.day, names, self.required_answers)
        return progress, hook.calls

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            names = await self.own_names()

            async def check() -> ReviewProgress:
                # the hook is synchronous (requests): in a thread, so the triggerer's loop is not blocked
                progress, calls = await asyncio.to_thread(self.check, names)
                self.log.info("Label Studio API calls for this check: %d", calls)
                return progress

            async for event in progress_events(
                check,
                self.min_completed_fraction,
                self.deadline,
                self.poll_interval,
                self.log,
                "Label Studio tasks",
            ):
                yield event
        except Exception as err:  # reported to the task, which fails with the message
            yield error_event(err)
