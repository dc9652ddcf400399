"""The benchmark's zero-CPU stand-in answers real boto3 clients with AWS's shapes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from PIL import Image

ROOT = Path(__file__).parents[2]
DAYS = {"2026-11-01": {"count": 2500}, "2026-11-02": {"count": 2, "size_mib": 1}}


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "standin.py"), "--latency", "0.2", "--days", json.dumps(DAYS)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    yield process.stdout.readline().strip()
    process.terminate()
    assert process.wait(timeout=10) is not None


def client(service: str, url: str):
    return boto3.client(
        service, endpoint_url=url, region_name="us-east-1", aws_access_key_id="b", aws_secret_access_key="b"
    )


def test_a_day_is_listed_in_pages_of_1000_with_sizes(url: str) -> None:
    pages = list(
        client("s3", url)
        .get_paginator("list_objects_v2")
        .paginate(Bucket="bench-bucket", Prefix="active-learning/incoming/2026-11-01/")
    )
    assert [len(page["Contents"]) for page in pages] == [1000, 1000, 500]
    keys = [item["Key"] for page in pages for item in page["Contents"]]
    assert len(set(keys)) == 2500
    large = client("s3", url).list_objects_v2(Bucket="b", Prefix="active-learning/incoming/2026-11-02/")
    assert [item["Size"] for item in large["Contents"]] == [2**20, 2**20]


def test_objects_are_a_real_jpeg_and_writes_are_accepted(url: str, tmp_path: Path) -> None:
    s3 = client("s3", url)
    body = s3.get_object(Bucket="b", Key="active-learning/incoming/2026-11-01/000001.jpg")["Body"].read()
    (tmp_path / "image.jpg").write_bytes(body)
    with Image.open(tmp_path / "image.jpg") as image:
        assert (image.format, image.size) == ("JPEG", (320, 240))
    s3.put_object(Bucket="b", Key="active-learning/runs/x.jsonl", Body=b"{}\n")


def test_invoke_endpoint_answers_a_canned_prediction_after_the_latency(url: str) -> None:
    started = time.monotonic()
    response = client("sagemaker-runtime", url).invoke_endpoint(
        EndpointName="bench-endpoint", Body=b"jpeg", ContentType="image/jpeg"
    )
    assert time.monotonic() - started >= 0.2
    assert json.loads(response["Body"].read())["prediction"][0][:2] == [0.0, 0.42]


def test_a_shards_file_is_kept_and_read_back_and_others_are_not(url: str) -> None:
    s3 = client("s3", url)
    shard = "active-learning/runs/2026-11-01/shards/0-of-2.jsonl"
    with pytest.raises(s3.exceptions.ClientError, match="404"):
        s3.head_object(Bucket="b", Key=shard)
    s3.put_object(Bucket="b", Key=shard, Body=b'{"source": "s3://b/x.jpg"}\n')

    assert s3.head_object(Bucket="b", Key=shard)["ContentLength"] == 27
    assert s3.get_object(Bucket="b", Key=shard)["Body"].read() == b'{"source": "s3://b/x.jpg"}\n'
    with pytest.raises(s3.exceptions.ClientError, match="404"):
        s3.head_object(Bucket="b", Key="active-learning/runs/x.jsonl")
