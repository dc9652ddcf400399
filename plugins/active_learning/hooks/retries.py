"""Make botocore's retries visible: how many requests were retried, per operation."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

RETRY_MODE = "adaptive"  # standard retries plus client-side rate limiting after throttling
MAX_ATTEMPTS = 10


def client_config(concurrency: int = 1) -> dict[str, Any]:
    """The package's botocore config for every hook: adaptive retries with room for a throttled
    minute, and a connection pool as large as the calls in flight."""
    return {
        "retries": {"mode": RETRY_MODE, "max_attempts": MAX_ATTEMPTS},
        "max_pool_connections": max(concurrency, 10),
    }


class RetryLog:
    """Counts the retries (throttling, 5xx, dropped connections) of the clients it watches.

    botocore retries silently; this reads ``ResponseMetadata.RetryAttempts`` of every response,
    successful or not, and logs a running total at most every ``interval`` seconds.

    :param log: where to log.
    :param interval: seconds between running totals while retries happen.
    """

    def __init__(self, log: logging.Logger, interval: float = 30.0) -> None:
        self.log = log
        self.interval = interval
        self.calls = 0
        self.retried_calls = 0
        self.retries: Counter[str] = Counter()
        self._last_report = 0.0

    def watch(self, client: Any) -> Any:
        """Count the retries of ``client`` (a boto3 client); returns it."""
        client.meta.events.register("after-call", self._after_call, unique_id=f"retry-log-{id(self)}")
        return client

    def _after_call(self, parsed: dict[str, Any] | None = None, model: Any = None, **_: Any) -> None:
        self.calls += 1
        attempts = ((parsed or {}).get("ResponseMetadata") or {}).get("RetryAttempts", 0)
        if not attempts:
            return
        self.retried_calls += 1
        self.retries[getattr(model, "name", "unknown")] += attempts
        if time.monotonic() - self._last_report >= self.interval:
            self._last_report = time.monotonic()
            self.log.warning("AWS retries so far: %s", self.describe())

    def to_dict(self) -> dict[str, Any]:
        """The counts, to carry across a deferral (in a trigger's arguments and event)."""
        return {"calls": self.calls, "retried_calls": self.retried_calls, "retries": dict(self.retries)}

    def add(self, counts: Mapping[str, Any] | None) -> None:
        """Count the requests of :meth:`to_dict` made elsewhere (before a deferral, by a trigger)."""
        if counts:
            self.calls += int(counts.get("calls", 0))
            self.retried_calls += int(counts.get("retried_calls", 0))
            self.retries.update(counts.get("retries") or {})

    def describe(self) -> str:
        by_operation = ", ".join(f"{name} {count}" for name, count in self.retries.most_common())
        return (
            f"{self.retried_calls} of {self.calls} requests retried, {sum(self.retries.values())} retries"
            + (f" ({by_operation})" if by_operation else "")
        )
