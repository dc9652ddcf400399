"""Trigger waiting, in the triggerer, until a run's human loops are done."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from active_learning.hooks.a2i import A2IRuntimeHook, list_human_loops_request
from active_learning.reviews import ReviewProgress
from active_learning.triggers.review_wait import error_event, progress_events, read_own_loop_names


class HumanLoopTrigger(BaseTrigger):
    """Page ``ListHumanLoops`` every ``poll_interval`` seconds until the run's loops are done.

    Yields ``{"status": "success" | "timeout" | "error", "progress": {...}}``; a timeout is an event,
    not an error, so the task decides whether to go on with what is complete.

    :param flow_definition_arn: the flow definition of the loops.
    :param human_loops_uri: the run's ``human-loops.jsonl``: only the loops named there count.
    :param created_after: ISO time before the run's first loop was created.
    :param created_before: ISO time after the run's last loop was created (optional).
    :param min_completed_fraction: share of completed loops that is enough.
    :param deadline: ISO time after which a ``timeout`` event is sent.
    :param poll_interval: seconds between checks.
    """

    def __init__(
        self,
        *,
        flow_definition_arn: str,
        human_loops_uri: str,
        created_after: str,
        min_completed_fraction: float,
        deadline: str,
        poll_interval: float = 60,
        created_before: str | None = None,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict | None = None,
    ) -> None:
        super().__init__()
        self.flow_definition_arn = flow_definition_arn
        self.human_loops_uri = human_loops_uri
        self.created_after = created_after
        self.created_before = created_before
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
                "flow_definition_arn": self.flow_definition_arn,
                "human_loops_uri": self.human_loops_uri,
                "created_after": self.created_after,
                "created_before": self.created_before,
                "min_completed_fraction": self.min_completed_fraction,
                "deadline": self.deadline,
                "poll_interval": self.poll_interval,
                "aws_conn_id": self.aws_conn_id,
                "region_name": self.region_name,
                "verify": self.verify,
                "botocore_config": self.botocore_config,
            },
        )

    def _connection(self) -> dict[str, Any]:
        return {
            "aws_conn_id": self.aws_conn_id,
            "region_name": self.region_name,
            "verify": self.verify,
            "config": self.botocore_config,
        }

    def hook(self) -> A2IRuntimeHook:
        return A2IRuntimeHook(**self._connection())

    async def own_loop_names(self) -> frozenset[str]:
        """The run's loops, read once from its ``human-loops.jsonl``."""
        return await read_own_loop_names(self.human_loops_uri, self._connection())

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

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            names = await self.own_loop_names()
            async with await self.hook().get_async_conn() as client:

                async def check() -> ReviewProgress:
                    return await self.progress(client, names)

                async for event in progress_events(
                    check,
                    self.min_completed_fraction,
                    self.deadline,
                    self.poll_interval,
                    self.log,
                    "Human loops",
                ):
                    yield event
        except Exception as err:  # reported to the task, which fails with the message
            yield error_event(err)
