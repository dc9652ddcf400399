"""The fault-injecting proxy of ``make chaos``, between real boto3 clients and the local AWS."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from emulator.server import Emulator
from tools.faults import FaultProxy, FaultRates

BUCKET = "faults-bucket"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator() as running:
        running.client("s3").create_bucket(Bucket=BUCKET)
        yield running


def client(service: str, url: str, attempts: int) -> Any:
    return boto3.session.Session().client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="faults",
        aws_secret_access_key="faults",
        config=Config(retries={"mode": "standard", "total_max_attempts": attempts}),
    )


def seed_faulting_first_roll_only(rate: float) -> int:
    """A seed whose first roll is under ``rate`` and whose second is not: one fault, then through."""
    for seed in range(1000):
        dice = random.Random(seed)
        if dice.random() < rate <= dice.random():
            return seed
    raise AssertionError("no such seed")


@pytest.mark.parametrize(
    ("service", "call", "operation"),
    [
        ("s3", lambda s3: s3.list_objects_v2(Bucket=BUCKET), "s3:GET bucket"),
        ("sagemaker", lambda sm: sm.list_endpoints(), "ListEndpoints"),
        (
            "sagemaker-a2i-runtime",
            lambda a2i: a2i.list_human_loops(FlowDefinitionArn="arn"),
            "ListHumanLoops",
        ),
    ],
)
def test_a_throttled_request_is_retried_by_botocore_and_succeeds(
    emulator: Emulator, service: str, call: Any, operation: str
) -> None:
    rates = FaultRates(throttle=0.5)
    with FaultProxy(emulator.url, rates, seed=seed_faulting_first_roll_only(0.5)) as proxy:
        call(client(service, proxy.url, attempts=3))

        assert proxy.counters() == {operation: {"requests": 2, "throttle": 1}}


@pytest.mark.parametrize(
    ("service", "call", "code", "status"),
    [
        ("s3", lambda s3: s3.list_objects_v2(Bucket=BUCKET), "SlowDown", 503),
        ("sagemaker", lambda sm: sm.list_endpoints(), "ThrottlingException", 400),
        (
            "sagemaker-a2i-runtime",
            lambda a2i: a2i.list_human_loops(FlowDefinitionArn="a"),
            "ThrottlingException",
            429,
        ),
    ],
)
def test_throttling_has_the_error_shape_of_the_protocol(
    emulator: Emulator, service: str, call: Any, code: str, status: int
) -> None:
    with FaultProxy(emulator.url, FaultRates(throttle=1.0)) as proxy, pytest.raises(ClientError) as raised:
        call(client(service, proxy.url, attempts=1))

    assert raised.value.response["Error"]["Code"] == code
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == status


def test_an_error_after_forwarding_reaches_the_emulator(emulator: Emulator) -> None:
    with FaultProxy(emulator.url, FaultRates(error_after=1.0)) as proxy:
        s3 = client("s3", proxy.url, attempts=1)
        with pytest.raises(ClientError) as raised:
            s3.put_object(Bucket=BUCKET, Key="after/object", Body=b"took effect")
        sagemaker = client("sagemaker", proxy.url, attempts=1)
        with pytest.raises(ClientError) as raised_json:
            sagemaker.create_model(
                ModelName="after-forward",
                ExecutionRoleArn="arn:aws:iam::123456789012:role/Faults",
                PrimaryContainer={"Image": "image", "ModelDataUrl": f"s3://{BUCKET}/model.tar.gz"},
            )

        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] in (500, 503)
        assert raised_json.value.response["Error"]["Code"] in ("InternalFailure", "ServiceUnavailable")
        assert emulator.get_object(f"s3://{BUCKET}/after/object") == b"took effect"
        assert emulator.client("sagemaker").describe_model(ModelName="after-forward")["ModelName"]
        assert proxy.counters() == {
            "CreateModel": {"requests": 1, "error_after": 1},
            "s3:PUT object": {"requests": 1, "error_after": 1},
        }


def test_an_error_before_forwarding_does_not_reach_the_emulator(emulator: Emulator) -> None:
    with FaultProxy(emulator.url, FaultRates(error_before=1.0)) as proxy:
        with pytest.raises(ClientError):
            client("s3", proxy.url, attempts=2).put_object(Bucket=BUCKET, Key="before/object", Body=b"x")

        assert emulator.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="before/")["KeyCount"] == 0
        assert proxy.counters() == {"s3:PUT object": {"requests": 2, "error_before": 2}}


def test_counters_count_every_request_and_fault(emulator: Emulator) -> None:
    emulator.put_object(f"s3://{BUCKET}/counted/object", b"data")
    rates = FaultRates(throttle=0.3, error_before=0.1, error_after=0.1)
    with FaultProxy(emulator.url, rates, seed=7) as proxy:
        s3 = client("s3", proxy.url, attempts=1)  # no retry: every fault is an error seen here
        errors = 0
        for _ in range(60):
            try:
                assert s3.get_object(Bucket=BUCKET, Key="counted/object")["Body"].read() == b"data"
            except ClientError:
                errors += 1

        counters = proxy.counters()["s3:GET object"]
        assert counters["requests"] == 60
        assert min(counters["throttle"], counters["error_before"], counters["error_after"]) > 0
        assert counters["throttle"] + counters["error_before"] + counters["error_after"] == errors
        assert proxy.total_faults() == errors


def test_a_denied_prefix_is_a_permanent_access_denied(emulator: Emulator) -> None:
    emulator.put_object(f"s3://{BUCKET}/incoming/2026-11-26/a.jpg", b"image")
    with FaultProxy(emulator.url, deny=("incoming/2026-11-26/",)) as proxy:
        s3 = client("s3", proxy.url, attempts=3)
        with pytest.raises(ClientError) as raised:
            s3.list_objects_v2(Bucket=BUCKET, Prefix="incoming/2026-11-26/")
        assert s3.list_objects_v2(Bucket=BUCKET, Prefix="incoming/2026-11-27/")["KeyCount"] == 0

        assert raised.value.response["Error"]["Code"] == "AccessDenied"
        assert proxy.counters()["s3:GET bucket"] == {"requests": 2, "denied": 1}  # not retried
