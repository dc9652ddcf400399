"""Waits in the triggerer for AWS resources: never a first check at once, every request counted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger
from airflow.providers.amazon.aws.utils.waiter_with_logging import async_wait
from airflow.providers.common.compat.sdk import AirflowException
from airflow.triggers.base import TriggerEvent

from active_learning.hooks.retries import RetryLog


class CountedWaiterRun:
    """The run of an ``AwsBaseWaiterTrigger`` subclass: the first check one ``waiter_delay`` after
    the deferral, and the AWS requests of the task's try (``carried_requests``, made before it
    deferred, plus the trigger's own) in the event's ``aws_requests``.

    A trigger firing within a second or two of the deferral loses the task's try to Airflow's race
    between the deferring try's exit and the trigger's event (apache/airflow#72716); the task
    checks once itself before it defers, so nothing is lost by waiting.
    """

    # of AwsBaseWaiterTrigger
    waiter_delay: int
    attempts: int
    waiter_name: str
    waiter_args: dict[str, Any]
    waiter_config_overrides: dict[str, Any] | None
    failure_message: str
    status_message: str
    status_queries: list[str]
    return_key: str
    return_value: Any
    serialized_fields: dict[str, Any]
    log: Any
    carried_requests: dict[str, Any] | None = None

    def carry(self, carried_requests: dict[str, Any] | None) -> None:
        """Keep (and serialize) the requests the task made before it deferred."""
        self.carried_requests = carried_requests
        self.serialized_fields["carried_requests"] = carried_requests

    async def run(self) -> AsyncIterator[TriggerEvent]:
        await asyncio.sleep(self.waiter_delay)
        requests = RetryLog(self.log)
        requests.add(self.carried_requests)
        hook = self.hook()  # type: ignore[attr-defined]
        # the base class's run, with the client watched (it gives no way to reach its client)
        async with await hook.get_async_conn() as client:
            requests.watch(client)
            waiter = hook.get_waiter(
                self.waiter_name,
                deferrable=True,
                client=client,
                config_overrides=self.waiter_config_overrides,
            )
            try:
                await async_wait(
                    waiter,
                    self.waiter_delay,
                    self.attempts,
                    self.waiter_args,
                    self.failure_message,
                    self.status_message,
                    self.status_queries,
                )
            except AirflowException as error:
                payload = self._event_from_exception(error).payload  # type: ignore[attr-defined]
            else:
                payload = {"status": "success", self.return_key: self.return_value}
        yield TriggerEvent({**payload, "aws_requests": requests.to_dict()})


class SageMakerWaitTrigger(CountedWaiterRun, SageMakerTrigger):
    """The provider's :class:`SageMakerTrigger` (training, transform, endpoint), first check after
    ``waiter_delay``, requests counted (see :class:`CountedWaiterRun`).

    :param carried_requests: the AWS requests the task made before it deferred (``RetryLog.to_dict``).
    """

    def __init__(self, *, carried_requests: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.carry(carried_requests)
