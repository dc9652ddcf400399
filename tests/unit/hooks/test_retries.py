"""RetryLog: botocore's retries counted from real responses (moto S3, 503s injected before sending)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws

from active_learning.hooks.retries import MAX_ATTEMPTS, RETRY_MODE, RetryLog, client_config
from tests.aws_faults import Http503


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        config = Config(retries={"mode": "standard", "max_attempts": 3})
        client = boto3.client("s3", region_name="us-east-1", config=config)
        client.create_bucket(Bucket="retries-bucket")
        yield client


def test_the_package_config_retries_adaptively_with_room_for_throttling() -> None:
    assert client_config(32) == {
        "retries": {"mode": RETRY_MODE, "max_attempts": MAX_ATTEMPTS},
        "max_pool_connections": 32,
    }
    assert client_config()["max_pool_connections"] == 10


def test_retried_requests_are_counted_per_operation(s3: Any, caplog: pytest.LogCaptureFixture) -> None:
    retry_log = RetryLog(logging.getLogger("test"), interval=0)
    retry_log.watch(s3)
    s3.meta.events.register_first("before-send.s3.PutObject", Http503(2))

    s3.put_object(Bucket="retries-bucket", Key="k", Body=b"x")
    s3.get_object(Bucket="retries-bucket", Key="k")

    assert (retry_log.calls, retry_log.retried_calls) == (2, 1)
    assert retry_log.retries == {"PutObject": 2}
    assert retry_log.describe() == "1 of 2 requests retried, 2 retries (PutObject 2)"
    assert "AWS retries so far: 1 of 1 requests retried" in caplog.text


def test_a_request_that_ran_out_of_retries_is_counted_too(s3: Any) -> None:
    retry_log = RetryLog(logging.getLogger("test"))
    retry_log.watch(s3)
    s3.meta.events.register_first("before-send.s3.GetObject", Http503(100))

    with pytest.raises(s3.exceptions.ClientError) as raised:
        s3.get_object(Bucket="retries-bucket", Key="k")

    retries = raised.value.response["ResponseMetadata"]["RetryAttempts"]
    assert f"reached max retries: {retries}" in str(raised.value)
    assert retries >= 2
    assert retry_log.retries == {"GetObject": retries}


def test_no_retry_no_count(s3: Any) -> None:
    retry_log = RetryLog(logging.getLogger("test"))
    retry_log.watch(s3)
    s3.list_buckets()
    assert (retry_log.calls, retry_log.describe()) == (1, "0 of 1 requests retried, 0 retries")
