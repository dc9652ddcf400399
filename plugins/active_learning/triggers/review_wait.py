"""What the review backends' triggers share: the run's own loops, and the wait until they are done."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from logging import Logger
from typing import Any

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.triggers.base import TriggerEvent

from active_learning.manifest import read_manifest
from active_learning.reviews import ReviewProgress, loop_names
from active_learning.settings import split_s3_uri


async def read_own_loop_names(human_loops_uri: str, aws_connection: dict[str, Any]) -> frozenset[str]:
    """The run's loops (or tasks), read once from its ``human-loops.jsonl`` with the async S3 client.

    :param aws_connection: ``aws_conn_id``, ``region_name``, ``verify`` and ``config`` of the S3 hook.
    """
    bucket, key = split_s3_uri(human_loops_uri)
    async with await S3Hook(**aws_connection).get_async_conn() as s3:
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
    """Check every ``poll_interval`` seconds; one ``success`` or ``timeout`` event with the progress.

    A timeout is an event, not an error, so the task decides whether to go on with what is complete.
    """
    until = datetime.fromisoformat(deadline)
    while True:
        progress = await check()
        log.info("%s: %s", what, progress.describe())
        if progress.is_done(min_completed_fraction):
            yield TriggerEvent({"status": "success", "progress": progress.to_dict()})
            return
        if datetime.now(UTC) >= until:
            yield TriggerEvent({"status": "timeout", "progress": progress.to_dict()})
            return
        await asyncio.sleep(poll_interval)


def error_event(err: Exception) -> TriggerEvent:
    """What a trigger sends when it cannot check: the task fails with the message."""
    return TriggerEvent({"status": "error", "message": f"{type(err).__name__}: {err}"})
