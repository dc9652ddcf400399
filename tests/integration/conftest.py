"""Integration tests run against the embedded local AWS on 127.0.0.1 with real boto3 clients."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from emulator.a2i import ReviewerConfig
from emulator.server import Emulator, EmulatorConfig

BUCKET = "integration-bucket"
ROLE = "arn:aws:iam::123456789012:role/Integration"
WORKTEAM = "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(
        reviewer=ReviewerConfig(delay=0.3, workers=0, seed=1),
        config=EmulatorConfig(activation_delay=0.2, update_delay=0.5, training_start_delay=0.1),
    ) as running:
        running.client("s3").create_bucket(Bucket=BUCKET)
        yield running


@pytest.fixture(scope="module")
def aws(emulator: Emulator) -> Callable[[str], Any]:
    """Unmodified boto3 clients pointed at the emulator, as the Airflow connection's endpoint_url does."""
    session = boto3.session.Session(
        aws_access_key_id="integration", aws_secret_access_key="integration", region_name="us-east-1"
    )
    clients: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in clients:
            clients[service] = session.client(service, endpoint_url=emulator.url)
        return clients[service]

    return client


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)
