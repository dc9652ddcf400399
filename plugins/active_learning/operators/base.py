"""What every loop operator shares: settings and run day from templated fields, S3 JSON Lines I/O."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date
from functools import cached_property
from typing import Any, TypeVar

from airflow.providers.amazon.aws.hooks.base_aws import AwsGenericHook
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.common.compat.sdk import AirflowFailException
from botocore.exceptions import ClientError

from active_learning.hooks.errors import error_code
from active_learning.hooks.retries import RetryLog, client_config
from active_learning.manifest import read_manifest, write_manifest
from active_learning.settings import LoopSettings, SettingsError

HookT = TypeVar("HookT", bound=AwsGenericHook)


def trigger_connection(task: Any) -> dict[str, Any]:
    """The connection arguments a trigger needs to rebuild the task's hook in the triggerer."""
    return {
        "aws_conn_id": task.aws_conn_id,
        "region_name": task.region_name,
        "verify": task.verify,
        "botocore_config": task.botocore_config,
    }


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

    The DAG file records bad ``AL_*`` values there instead of raising at parse time (which would
    remove the whole DAG); the list is read when the task runs, so every value read while parsing counts.

    :param problems: e.g. :attr:`active_learning.settings.EnvironmentDefaults.problems`.
    """

    def check_environment(context: Any) -> None:
        if problems:
            raise ConfigurationError(
                "bad environment variable(s) in the DAG file's environment: " + "; ".join(problems)
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

    def post_execute(self, context: Any, result: Any = None) -> None:
        super().post_execute(context, result)  # type: ignore[misc]
        if self.retry_log.calls:
            self.log.info("AWS requests: %s", self.retry_log.describe())

    @cached_property
    def s3(self) -> S3Hook:
        """One S3 hook per task: each new hook builds its own session (and assumes the role again)."""
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

    def other_hook(self, hook_class: type[HookT]) -> HookT:
        """Another AWS hook on the same connection, region and botocore config as the operator's."""
        return hook_class(**self._hook_parameters)


class S3JsonLinesWriter:
    """Write JSON Lines to a local spool file and upload it whole on a clean exit.

    A failure leaves the S3 object as it was; a retry overwrites it, never appends twice.
    """

    def __init__(self, s3: S3Hook, bucket: str, key: str) -> None:
        self.s3, self.bucket, self.key = s3, bucket, key
        self.count = 0
        self._spool: Any = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def __enter__(self) -> S3JsonLinesWriter:
        self._spool = tempfile.NamedTemporaryFile("w+", suffix=".jsonl", encoding="utf-8")
        return self

    def write(self, record: Mapping[str, Any]) -> None:
        self.count += write_manifest((record,), self._spool)

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        try:
            if exc_type is None:
                self._spool.flush()
                self.s3.load_file(self._spool.name, key=self.key, bucket_name=self.bucket, replace=True)
        finally:
            self._spool.close()


def put_json_lines(s3: S3Hook, bucket: str, key: str, lines: Iterable[Mapping[str, Any]]) -> int:
    """Upload lines as one JSON Lines object; returns the number of lines."""
    with S3JsonLinesWriter(s3, bucket, key) as writer:
        for line in lines:
            writer.write(line)
    return writer.count


def iter_json_lines(s3: S3Hook, bucket: str, key: str, missing_ok: bool = False) -> Iterator[dict[str, Any]]:
    """Read a JSON Lines object line by line as it streams from S3."""
    try:
        body = s3.get_conn().get_object(Bucket=bucket, Key=key)["Body"]
    except ClientError as err:
        if missing_ok and error_code(err) in ("NoSuchKey", "404"):
            return
        raise
    yield from read_manifest(line.decode("utf-8") for line in body.iter_lines())


def iter_objects(s3_client: Any, bucket: str, prefix: str) -> Iterator[tuple[str, int]]:
    """``(key, size in bytes)`` of the objects under a prefix, page by page (folder markers left out)."""
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if not item["Key"].endswith("/"):
                yield item["Key"], item["Size"]


def iter_keys(s3_client: Any, bucket: str, prefix: str) -> Iterator[str]:
    """Object keys under a prefix, page by page (folder markers left out)."""
    return (key for key, _ in iter_objects(s3_client, bucket, prefix))
