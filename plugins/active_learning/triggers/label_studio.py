"""Trigger waiting, in the triggerer, until a run's Label Studio tasks are done."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from active_learning.hooks.label_studio import LabelStudioHook
from active_learning.reviews import ReviewProgress
from active_learning.triggers.review_wait import Check, ReviewWaitTrigger


class LabelStudioReviewTrigger(ReviewWaitTrigger):
    """Page the project's tasks of the run day every ``poll_interval`` seconds until the run's are done.

    A check costs ``ceil(N / 100)`` listing calls for N tasks, plus one token exchange. Yields the
    same events as :class:`~active_learning.triggers.human_loops.HumanLoopTrigger`.

    :param label_studio_conn_id: the Label Studio connection.
    :param project_id: the project of the run's tasks.
    :param day: the run day (the tasks' ``data.day``).
    :param required_answers: submitted annotations that complete a task (the ``task_count`` setting).

    The other arguments and the events: :class:`~active_learning.triggers.review_wait.ReviewWaitTrigger`.
    """

    what = "Label Studio tasks"

    def __init__(
        self, *, label_studio_conn_id: str, project_id: int, day: str, required_answers: int, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.label_studio_conn_id = label_studio_conn_id
        self.project_id = project_id
        self.day = day
        self.required_answers = required_answers

    def backend_kwargs(self) -> dict[str, Any]:
        return {
            "label_studio_conn_id": self.label_studio_conn_id,
            "project_id": self.project_id,
            "day": self.day,
            "required_answers": self.required_answers,
        }

    def check(self, names: frozenset[str]) -> tuple[ReviewProgress, int]:
        """One check with a fresh hook (a fresh access token); returns the progress and the calls made."""
        hook = LabelStudioHook(self.label_studio_conn_id)
        progress = hook.day_progress(self.project_id, self.day, names, self.required_answers)
        return progress, hook.calls

    @asynccontextmanager
    async def checking(self, names: frozenset[str]) -> AsyncIterator[Check]:
        async def check() -> ReviewProgress:
            # the hook is synchronous (requests): in a thread, so the triggerer's loop is not blocked
            progress, calls = await asyncio.to_thread(self.check, names)
            self.log.info("Label Studio API calls for this check: %d", calls)
            return progress

        yield check
