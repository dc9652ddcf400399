"""What the review backends' triggers share: the run's own loops, and the wait until they are done."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from logging import Logger
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from active_learning.hooks.retries import RetryLog
from active_learning.manifest import read_manifest
from active_learning.reviews import ReviewProgress, loop_names
from active_learning.settings import split_s3_uri


async def read_own_loop_names(
    human_loops_uri: str, aws_connection: dict[str, Any], requests: RetryLog
) -> frozenset[str]:
    """The run's loops (or tasks), read once from its ``human-loops.jsonl`` with the async S3 client.

    :param aws_connection: ``aws_conn_id``, ``region_name``, ``verify`` and ``config`` of the S3 hook.
    :param requests: counts the request.
    """
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook  # in the triggerer, not at DAG parse

    bucket, key = split_s3_uri(human_loops_uri)
    async with await S3Hook(**aws_connection).get_async_conn() as s3:
        requests.watch(s3)
        response = await s3.get_object(Bucket=bucket, Key=key)
        async with response["Body"] as body:
            data = await body.read()
    return loop_names(read_manifest(data.decode("utf-8").splitlines()))


async def progress_events(
    check: Callable[[], Awaitable[ReviewProgress]],
    min_completed_fraction: float,
    deadline: str,
    poll_interval: float,
    log: Logger,
    what: str,
) -> AsyncIterator[TriggerEvent]:
    """Check every ``poll_interval`` seconds, the first time one interval after the deferral (the
    task checked before it deferred; a trigger firing at once loses the try to apache/airflow#72716);
    one ``success`` or ``timeout`` event with the progress.

    A timeout is an event, not an error, so the task decides whether to go on with what is complete.
    """
    until = datetime.fromisoformat(deadline)
    while True:
        await asyncio.sleep(poll_interval)
        progress = await check()
        log.info("%s: %s", what, progress.describe())
        if progress.is_done(min_completed_fraction):
            yield TriggerEvent({"status": "success", "progress": progress.to_dict()})
            return
        if datetime.now(UTC) >= until:
            yield TriggerEvent({"status": "timeout", "progress": progress.to_dict()})
            return


def error_event(err: Exception) -> TriggerEvent:
    """What a trigger sends when it cannot check: the task fails with the message."""
    return TriggerEvent({"status": "error", "message": f"{type(err).__name__}: {err}"})


Check = Callable[[], Awaitable[ReviewProgress]]


class ReviewWaitTrigger(BaseTrigger):
    """Base of the review backends' triggers: checks the run's loops every ``poll_interval`` seconds
    until enough are done or the deadline passes.

    Yields ``{"status": "success" | "timeout" | "error", "progress": {...}, "aws_requests": {...}}``;
    a timeout is an event, not an error, so the task decides whether to go on with what is complete.
    ``aws_requests`` counts the task's requests before it deferred and the trigger's own. A subclass
    names its own arguments in :meth:`backend_kwargs` and gives one check in :meth:`checking`.

    :param human_loops_uri: the run's ``human-loops.jsonl``: only the loops named there count.
    :param min_completed_fraction: share of completed loops that is enough.
    :param deadline: ISO time after which a ``timeout`` event is sent.
    :param poll_interval: seconds between checks.
    :param aws_conn_id: the AWS connection (S3, and A2I for its backend).
    :param region_name: its region.
    :param verify: its TLS verification.
    :param botocore_config: its botocore config.
    :param carried_requests: the AWS requests the task made before it deferred.
    """

    what = "Reviews"  # the log's name for what is checked

    def __init__(
        self,
        *,
        human_loops_uri: str,
        min_completed_fraction: float,
        deadline: str,
        poll_interval: float = 60,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict | None = None,
        carried_requests: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.human_loops_uri = human_loops_uri
        self.min_completed_fraction = min_completed_fraction
        self.deadline = deadline
        self.poll_interval = poll_interval
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.verify = verify
        self.botocore_config = botocore_config
        self.carried_requests = carried_requests
        self.requests = RetryLog(self.log)
        self.requests.add(carried_requests)

    def backend_kwargs(self) -> dict[str, Any]:
        """The subclass's own constructor arguments, as serialized."""
        raise NotImplementedError

    def checking(self, names: frozenset[str]) -> AbstractAsyncContextManager[Check]:
        """A context holding what the checks need (clients, their AWS requests counted in
        :attr:`requests`), giving one check of ``names``."""
        raise NotImplementedError

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                **self.backend_kwargs(),
                "human_loops_uri": self.human_loops_uri,
                "min_completed_fraction": self.min_completed_fraction,
                "deadline": self.deadline,
                "poll_interval": self.poll_interval,
                "aws_conn_id": self.aws_conn_id,
                "region_name": self.region_name,
                "verify": self.verify,
                "botocore_config": self.botocore_config,
                "carried_requests": self.carried_requests,
            },
        )

    def aws_connection(self) -> dict[str, Any]:
        """Keyword arguments of an AWS hook on the trigger's connection."""
        return {
            "aws_conn_id": self.aws_conn_id,
            "region_name": self.region_name,
            "verify": self.verify,
            "config": self.botocore_config,
        }

    async def own_loop_names(self) -> frozenset[str]:
        """The run's loops (or tasks), read once from its ``human-loops.jsonl``."""
        return await read_own_loop_names(self.human_loops_uri, self.aws_connection(), self.requests)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            names = await self.own_loop_names()
            async with self.checking(names) as check:
                async for event in progress_events(
                    check, self.min_completed_fraction, self.deadline, self.poll_interval, self.log, self.what
                ):
                    yield TriggerEvent({**event.payload, "aws_requests": self.requests.to_dict()})
        except Exception as err:  # reported to the task, which fails with the message
            yield TriggerEvent({**error_event(err).payload, "aws_requests": self.requests.to_dict()})
