"""JSON Lines objects in S3: listed, streamed line by line, and written whole (never half)."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from datetime import date
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from botocore.exceptions import ClientError

from active_learning.hooks.errors import error_code
from active_learning.manifest import read_manifest, write_manifest
from active_learning.settings import LoopSettings

if TYPE_CHECKING:  # the provider's S3Hook imports boto3's transfer manager (~200 ms): not at DAG parse
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

RUN_MANIFEST = re.compile(r"runs/(\d{4}-\d{2}-\d{2})/augmented\.manifest$")


class S3ClientHook(AwsBaseHook):
    """An S3 client on the task's AWS connection, for tasks whose own hook is S3: the provider's
    :class:`S3Hook` (imported where it runs) is what writes and streams the objects."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "s3"
        super().__init__(*args, **kwargs)


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


def labelled_lines(
    s3: S3Hook, settings: LoopSettings, through: date | None = None
) -> Iterator[dict[str, Any]]:
    """Every human label so far: the lines of each ``runs/<day>/augmented.manifest`` (up to ``through``).

    :raises ConfinementError: naming the day and the line, for a ``source-ref`` outside the loop's
        bucket and prefix (and its allowed locations): training would read it with the execution role.
    """
    for key in sorted(iter_keys(s3.get_conn(), settings.bucket, settings.key("runs") + "/")):
        match = RUN_MANIFEST.search(key)
        if not match or (through is not None and date.fromisoformat(match.group(1)) > through):
            continue
        for number, line in enumerate(iter_json_lines(s3, settings.bucket, key), start=1):
            settings.check_inside(
                line.get("source-ref"),
                f"the source-ref of line {number} of runs/{match.group(1)}/augmented.manifest",
            )
            yield line
