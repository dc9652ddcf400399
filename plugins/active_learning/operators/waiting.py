"""Long waits: in the triggerer when deferrable, else with the hook's waiter in the worker."""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import AirflowException
from botocore.exceptions import WaiterError

from active_learning.triggers.aws_waits import SageMakerWaitTrigger

# Endpoint statuses that end by themselves: wait for them rather than fail.
ENDPOINT_WAITING_STATUSES = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack"})


def trigger_connection(task: Any) -> dict[str, Any]:
    """The connection arguments a trigger needs to rebuild the task's hook in the triggerer."""
    return {
        "aws_conn_id": task.aws_conn_id,
        "region_name": task.region_name,
        "verify": task.verify,
        "botocore_config": task.botocore_config,
    }


class WaitOrDeferMixin:
    """One way to wait for an AWS resource: defer to a trigger, or poll with the hook's waiter.

    Mixed into operators with ``deferrable``, ``waiter_delay`` and ``waiter_max_attempts``.
    """

    deferrable: bool
    waiter_delay: int
    waiter_max_attempts: int
    hook: Any
    retry_log: Any

    def wait_or_defer(
        self,
        trigger_class: type,
        trigger_kwargs: dict[str, Any],
        waiter_name: str,
        waiter_kwargs: dict[str, Any],
        resume: dict[str, Any] | None = None,
        waiter_hook: Any = None,
    ) -> WaiterError | None:
        """Defer to ``trigger_class`` (resuming in ``execute_complete`` with ``resume`` as keywords), or
        wait with the hook's waiter ``waiter_name``. The trigger carries the requests made so far.

        :param waiter_hook: the hook whose client has the waiter, when it is not the task's own.
        :return: the waiter's error when it gave up (the caller decides what that means), else ``None``.
        """
        if self.deferrable:
            self.defer(  # type: ignore[attr-defined]
                trigger=trigger_class(
                    **trigger_kwargs,
                    waiter_delay=self.waiter_delay,
                    waiter_max_attempts=self.waiter_max_attempts,
                    carried_requests=self.retry_log.to_dict(),
                    **trigger_connection(self),
                ),
                method_name="execute_complete",
                kwargs=resume or None,
            )
        try:
            (waiter_hook or self.hook).get_waiter(waiter_name).wait(
                **waiter_kwargs,
                WaiterConfig={"Delay": self.waiter_delay, "MaxAttempts": self.waiter_max_attempts},
            )
        except WaiterError as err:
            return err
        return None

    def wait_for_endpoint(self, endpoint_name: str, **resume: Any) -> None:
        """Wait until the endpoint is InService; when deferring, ``resume`` reaches ``execute_complete``."""
        err = self.wait_or_defer(
            SageMakerWaitTrigger,
            {"job_name": endpoint_name, "job_type": "endpoint"},
            "endpoint_in_service",
            {"EndpointName": endpoint_name},
            resume,
        )
        if err is not None:
            described = self.hook.describe_endpoint(endpoint_name)
            raise AirflowException(
                f"Endpoint {endpoint_name} did not become InService ({err}): it is "
                f"{described['EndpointStatus']}: {described.get('FailureReason', '')}"
            ) from err
