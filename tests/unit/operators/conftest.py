"""Fixtures of the operator tests: S3 in moto, images made with Pillow, a scripted endpoint, A2I stubs."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from PIL import Image

BUCKET = "my-bucket"
DAY = "2026-11-26"
PREFIX = "active-learning"  # LoopSettings' default key prefix
INCOMING = f"{PREFIX}/incoming/{DAY}/"
RUNS = f"{PREFIX}/runs/{DAY}/"
REGION = "us-east-1"
ACCOUNT = "123456789012"
SETTINGS: dict[str, Any] = {
    "bucket": BUCKET,
    "role_arn": f"arn:aws:iam::{ACCOUNT}:role/A2IRole",
    "workteam_arn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:workteam/private-crowd/reviewers",
    "endpoint_name": "object-detection",
}
FLOW_DEFINITION_NAME = "active-learning-fd-0123456789ab"
FLOW_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:flow-definition/{FLOW_DEFINITION_NAME}"
# One confident detection: what the scripted endpoint answers for an image it has no script for.
DEFAULT_PREDICTION = [[14.0, 0.9, 0.1, 0.2, 0.5, 0.8]]


def operator_kwargs(**settings: Any) -> dict[str, Any]:
    """Constructor arguments shared by the loop operators; ``settings`` adds to the required ones."""
    return {
        "settings": {**SETTINGS, **settings},
        "day": DAY,
        "aws_conn_id": None,
        "region_name": REGION,
    }


def image_bytes(image_format: str, width: int, height: int, color: str = "steelblue") -> bytes:
    """An encoded image made at run time (no binary fixtures in the repository)."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, image_format)
    return buffer.getvalue()


def source(name: str) -> str:
    return f"s3://{BUCKET}/{INCOMING}{name}"


def put(s3: Any, key: str, body: bytes | str) -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body=body.encode() if isinstance(body, str) else body)


def put_lines(s3: Any, key: str, lines: list[dict[str, Any]]) -> None:
    put(s3, key, "".join(json.dumps(line) + "\n" for line in lines))


def read_text(s3: Any, key: str) -> str:
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()


def read_lines(s3: Any, key: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in read_text(s3, key).splitlines()]


def exists(s3: Any, key: str) -> bool:
    try:
        s3.head_object(Bucket=BUCKET, Key=key)
    except ClientError:
        return False
    return True


def client_error(code: str, message: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


@pytest.fixture
def s3() -> Iterator[Any]:
    """A moto S3 with the loop's bucket; hooks built inside the test talk to it too."""
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def context() -> dict[str, Any]:
    from unittest.mock import MagicMock

    return {"ti": MagicMock()}


class FakeEndpoint:
    """Stands in for ``SageMakerRuntimeHook.invoke_endpoint`` serving the built-in object-detection model.

    Like the real container it decodes the request body, so the answer depends on the image: ``script``
    maps an image size ``(width, height)`` to the rows of ``{"prediction": [...]}``, to raw response
    bytes (a malformed answer) or to an exception to raise. Other images get ``DEFAULT_PREDICTION``.
    """

    content_types = {"JPEG": "image/jpeg", "PNG": "image/png"}

    def __init__(self) -> None:
        self.script: dict[tuple[int, int], Any] = {}
        self.calls: list[tuple[int, int]] = []
        self.lock = threading.Lock()

    def __call__(self, endpoint_name: str, body: bytes, content_type: str) -> bytes:
        assert endpoint_name == SETTINGS["endpoint_name"]
        with Image.open(io.BytesIO(body)) as image:
            image_format, size = image.format, image.size
        assert content_type == self.content_types[image_format], (image_format, content_type)
        with self.lock:
            self.calls.append(size)
        answer = self.script.get(size, DEFAULT_PREDICTION)
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, bytes):
            return answer
        return json.dumps({"prediction": answer}).encode()


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> FakeEndpoint:
    """Patch InvokeEndpoint (moto's runtime only returns canned data) with a scripted model."""
    from active_learning.hooks.sagemaker_runtime import SageMakerRuntimeHook

    fake = FakeEndpoint()
    # An instance is not a descriptor: hook.invoke_endpoint(name, body, type) calls fake(name, body, type).
    monkeypatch.setattr(SageMakerRuntimeHook, "invoke_endpoint", fake)
    return fake


class JsonMatching:
    """Equal to a JSON string that decodes to ``expected`` (for Stubber ``expected_params``)."""

    def __init__(self, expected: Any) -> None:
        self.expected = expected

    def __eq__(self, actual: object) -> bool:
        return isinstance(actual, str) and json.loads(actual) == self.expected

    def __hash__(self) -> int:  # pragma: no cover - not hashed, defined for consistency with __eq__
        return hash(json.dumps(self.expected, sort_keys=True))

    def __repr__(self) -> str:
        return f"JsonMatching({self.expected!r})"
