"""The loop's alerts through Airflow notifiers: what a failed day, late reviews and empty days send.

One place turns the DAG-level knobs (``alert_sns_topic_arn``, ``alert_notifier``...) into a
notifier: the Amazon provider's ``SnsNotifier`` by default, any notifier class otherwise. The DAG
uses it as its failure callback (one message per failed DagRun, never one per retry), as a deadline
alert's callback (late reviews: one message per DagRun, run by the triggerer) and gives it to the
day's summary task (empty days). Notifier classes are imported only when an alert is configured.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from typing import Any

from active_learning.settings import DagSettings

SNS_NOTIFIER = "airflow.providers.amazon.aws.notifications.sns.SnsNotifier"
SNS_SUBJECT_LIMIT = 100  # characters SNS allows in a subject


@dataclass(frozen=True)
class AlertRoute:
    """Which notifier class sends the loop's alerts, and its arguments besides the message."""

    notifier_path: str
    arguments: dict[str, Any]
    message_argument: str

    def arguments_with(self, message: str, subject: str) -> dict[str, Any]:
        """The notifier's arguments carrying ``message`` (and, for SNS, ``subject``)."""
        arguments = {**self.arguments, self.message_argument: message}
        if self.notifier_path == SNS_NOTIFIER:
            arguments["subject"] = subject[:SNS_SUBJECT_LIMIT]
        return arguments

    def notifier(self, message: str, subject: str) -> Any:
        """A notifier instance sending ``message`` (Jinja, rendered with the run's context)."""
        return notifier_class(self.notifier_path)(**self.arguments_with(message, subject))


def notifier_class(path: str) -> Any:
    """The class at ``module.Class`` ``path``."""
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def alert_route(knobs: DagSettings, problems: list[str]) -> AlertRoute | None:
    """Where the loop's alerts go; ``None`` when none is configured.

    A bad ``alert_notifier_kwargs`` or a notifier class that cannot be imported is recorded in
    ``problems`` (every task then fails naming it, like a bad ``AL_*`` value) and the alerts are
    off; it never breaks the DAG's parse.
    """
    arguments: dict[str, Any] = {}
    if knobs.alert_notifier_kwargs:
        try:
            arguments = json.loads(knobs.alert_notifier_kwargs)
        except json.JSONDecodeError as err:
            problems.append(f"alert_notifier_kwargs={knobs.alert_notifier_kwargs!r} is not JSON: {err}")
            return None
        if not isinstance(arguments, dict):
            problems.append(f"alert_notifier_kwargs={knobs.alert_notifier_kwargs!r} is not a JSON object")
            return None
    if knobs.alert_notifier:
        try:
            notifier_class(knobs.alert_notifier)
        except (ImportError, AttributeError, ValueError) as err:
            problems.append(f"alert_notifier={knobs.alert_notifier!r} cannot be imported: {err}")
            return None
        return AlertRoute(knobs.alert_notifier, arguments, knobs.alert_message_argument)
    if knobs.alert_sns_topic_arn:
        arguments = {"aws_conn_id": knobs.aws_conn_id, "target_arn": knobs.alert_sns_topic_arn, **arguments}
        return AlertRoute(SNS_NOTIFIER, arguments, "message")
    return None


def failed_day_message(loop: str) -> tuple[str, str]:
    """Subject and text of a failed day (a DAG failure callback's context: ``dag_run``, ``reason``)."""
    return (
        f"Active learning {loop}: a day failed",
        f"Loop {loop}: run {{{{ dag_run.run_id }}}} failed ({{{{ reason }}}}). "
        "The failed task is named in the failed_day task's log.",
    )


def late_day_message(loop: str, hours: float) -> tuple[str, str]:
    """Subject and text of a day not done in time (a deadline callback's context: ``dag_run``)."""
    return (
        f"Active learning {loop}: reviews late",
        f"Loop {loop}: run {{{{ dag_run['run_id'] }}}} is not done {hours:g} h after it was queued: "
        "its reviews (or its approval) are late.",
    )


def empty_days_message(loop: str, days: list[str]) -> tuple[str, str]:
    """Subject and text of days in a row without images."""
    return (
        f"Active learning {loop}: no images for {len(days)} days",
        f"Loop {loop}: no image under incoming/<day>/ on {len(days)} days in a row ({', '.join(days)}): "
        "has data stopped arriving?",
    )
