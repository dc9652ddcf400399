"""What every loop operator shares: settings and run day from templated fields, configuration errors,
retry logging and the console links."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException

from active_learning.hooks.retries import RetryLog, client_config
from active_learning.links.review import ReviewLink
from active_learning.settings import LoopSettings, SettingsError

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook


class ConfigurationError(AirflowFailException, SettingsError):
    """A wrong setting or argument: the task fails once, without retries (a retry cannot fix it).

    Still a :class:`SettingsError`, so callers may catch it as one.
    """


def as_mapping(value: Any, name: str) -> Mapping[str, Any]:
    """A templated mapping argument; a JSON string (what a Jinja template renders) is decoded.

    :raises ConfigurationError: when it is neither (not retried).
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise ConfigurationError(f"{name} is neither a mapping nor a JSON object: {err}") from err
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{name} must be a mapping, got {type(value).__name__}")
    return value


def refuse_bad_environment(problems: Sequence[str]) -> Callable[[Any], None]:
    """A ``pre_execute`` hook failing the task, without retries, while ``problems`` is not empty.

    The DAG file records bad ``AL_*`` values and bad loops-file entries there instead of raising at
    parse time (which would remove the whole DAG, or every loop's); the list is read when the task
    runs, so every value read while parsing counts.

    :param problems: e.g. :attr:`active_learning.settings.EnvironmentDefaults.problems`.
    """

    def check_environment(context: Any) -> None:
        if problems:
            raise ConfigurationError(
                "bad setting(s) in the DAG's AL_* variables or loops file: " + "; ".join(problems)
            )

    return check_environment


class RetryLoggingMixin:
    """The package's retry config for every AWS task, and a log of the retries it needed.

    Mixed into ``AwsBaseOperator``/``AwsBaseSensor`` subclasses, before them. The task's own hook and
    its S3 hook are watched from ``pre_execute``; the total is logged after ``execute``.
    """

    log: Any
    hook: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("botocore_config", client_config())
        super().__init__(*args, **kwargs)

    @cached_property
    def retry_log(self) -> RetryLog:
        return RetryLog(self.log)

    def pre_execute(self, context: Any) -> None:
        super().pre_execute(context)  # type: ignore[misc]
        self.retry_log.watch(self.hook.conn)
        self.retry_log.watch(self.s3.get_conn())

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Any) -> Any:
        """Count the requests of the try before the deferral and the trigger's (its event carries them)."""
        event = (next_kwargs or {}).get("event")
        if isinstance(event, Mapping):
            self.retry_log.add(event.get("aws_requests"))
        return super().resume_execution(next_method, next_kwargs, context)  # type: ignore[misc]

    def post_execute(self, context: Any, result: Any = None) -> None:
        super().post_execute(context, result)  # type: ignore[misc]
        if self.retry_log.calls:
            self.log.info("AWS requests: %s", self.retry_log.describe())

    @cached_property
    def s3(self) -> S3Hook:
        """One S3 hook per task: each new hook builds its own session (and assumes the role again)."""
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook  # boto3's transfer manager: not at parse

        return S3Hook(**self._hook_parameters)  # type: ignore[attr-defined]


class LoopOperatorMixin(RetryLoggingMixin):
    """Settings and run day of the loop, from the operator's templated ``settings`` and ``day``.

    Mixed into ``AwsBaseOperator`` subclasses; nothing here does I/O at construction.
    """

    settings: Mapping[str, Any]
    day: str
    _hook_parameters: dict[str, Any]

    @property
    def loop_settings(self) -> LoopSettings:
        """The validated settings; a JSON string (e.g. rendered from ``{{ params | tojson }}``) is decoded.

        :raises ConfigurationError: naming the wrong setting (not retried).
        """
        mapping = as_mapping(self.settings, "settings")
        try:
            return LoopSettings.from_mapping(mapping)
        except SettingsError as err:
            raise ConfigurationError(str(err)) from err

    @property
    def run_day(self) -> date:
        """The day the run processes.

        :raises ConfigurationError: when ``day`` is not a date (not retried).
        """
        try:
            return date.fromisoformat(str(self.day))
        except ValueError as err:
            raise ConfigurationError(f"day={self.day!r} is not a YYYY-MM-DD date") from err

    def persist_link(self, link: Any, context: Any, **resource: str) -> None:
        """Store a console link (a ``BaseAwsLink`` subclass) to the resource the task works on."""
        link.persist(
            context=context,
            operator=self,
            region_name=self.hook.conn_region_name,  # type: ignore[attr-defined]
            aws_partition=self.hook.conn_partition,  # type: ignore[attr-defined]
            **resource,
        )


class ReviewTaskMixin(LoopOperatorMixin):
    """What the review tasks give the run's review backend (:class:`active_learning.review_backends.
    base.ReviewTask`): they call it, chosen by the ``review_backend`` setting, and name none.

    :param review_conn_id: the Airflow connection of a review backend outside AWS (Label Studio: an
        HTTP connection; empty: the backend's default).
    :param concurrency: calls in flight at most (starting reviews, reading answers).
    """

    concurrency: int
    review_conn_id: str | None

    def __init__(
        self, *args: Any, review_conn_id: str | None = None, concurrency: int = 4, **kwargs: Any
    ) -> None:
        kwargs.setdefault("botocore_config", client_config(concurrency))
        super().__init__(*args, **kwargs)
        self.review_conn_id = review_conn_id
        self.concurrency = concurrency

    def review_backend_name(self) -> str:
        """Which backend reviews: the ``review_backend`` setting."""
        return self.loop_settings.review_backend

    @cached_property
    def backend(self) -> Any:
        """The run's review backend (:class:`active_learning.review_backends.base.ReviewBackend`),
        its module imported now, not at DAG parse (backends import their hooks)."""
        from active_learning.review_backends.base import review_backend

        return review_backend(self.review_backend_name(), self)  # type: ignore[arg-type]

    def aws_hook(self, hook_class: type) -> Any:
        """The task's hook of ``hook_class`` on its AWS connection (one per class), its requests
        counted in the task's log."""
        hooks = self.__dict__.setdefault("_aws_hooks", {})
        if hook_class not in hooks:
            hooks[hook_class] = hook_class(**self._hook_parameters)
            self.retry_log.watch(hooks[hook_class].get_conn())
        return hooks[hook_class]

    def persist_review_link(self, context: Any, url: str) -> None:
        ReviewLink.persist(context, url)
