"""Trigger waiting, in the triggerer, until a run's human loops are done."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from active_learning.hooks.a2i import A2IRuntimeHook, list_human_loops_request
from active_learning.reviews import ReviewProgress
from active_learning.triggers.review_wait import Check, ReviewWaitTrigger


class HumanLoopTrigger(ReviewWaitTrigger):
    """Page ``ListHumanLoops`` every ``poll_interval`` seconds until the run's loops are done.

    :param flow_definition_arn: the flow definition of the loops.
    :param created_after: ISO time before the run's first loop was created.
    :param created_before: ISO time after the run's last loop was created (optional).

    The other arguments and the events: :class:`~active_learning.triggers.review_wait.ReviewWaitTrigger`.
    """

    what = "Human loops"

    def __init__(
        self,
        *,
        flow_definition_arn: str,
        created_after: str,
        created_before: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.flow_definition_arn = flow_definition_arn
        self.created_after = created_after
        self.created_before = created_before

    def backend_kwargs(self) -> dict[str, Any]:
        return {
            "flow_definition_arn": self.flow_definition_arn,
            "created_after": self.created_after,
            "created_before": self.created_before,
        }

    def hook(self) -> A2IRuntimeHook:
        return A2IRuntimeHook(**self.aws_connection())

    async def progress(self, client: Any, names: frozenset[str]) -> ReviewProgress:
        """One check: every page of the run's creation-time window of the flow definition's loops."""
        paginator = client.get_paginator("list_human_loops")
        pages = paginator.paginate(
            **list_human_loops_request(
                self.flow_definition_arn,
                datetime.fromisoformat(self.created_after),
                datetime.fromisoformat(self.created_before) if self.created_before else None,
            )
        )
        summaries = [summary async for page in pages for summary in page["HumanLoopSummaries"]]
        return ReviewProgress.from_summaries(summaries, names)

    @asynccontextmanager
    async def checking(self, names: frozenset[str]) -> AsyncIterator[Check]:
        async with await self.hook().get_async_conn() as client:
            self.requests.watch(client)

            async def check() -> ReviewProgress:
                return await self.progress(client, names)

            yield check
