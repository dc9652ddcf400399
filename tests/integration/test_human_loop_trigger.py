"""HumanLoopTrigger's own S3 read, through aiobotocore and an Airflow connection, on the local AWS."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

import pytest

from active_learning.triggers.human_loops import HumanLoopTrigger
from emulator.server import Emulator
from tests.integration.conftest import BUCKET

KEY = "active-learning/runs/2026-11-26/human-loops.jsonl"


def test_the_trigger_reads_the_runs_own_loop_names_from_s3(
    emulator: Emulator, aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [f"active-learning-20261126-{i:016x}" for i in range(250)]
    body = "".join(json.dumps({"name": name, "source": f"s3://{BUCKET}/{name}.jpg"}) + "\n" for name in names)
    aws("s3").put_object(Bucket=BUCKET, Key=KEY, Body=body.encode())
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_LOCAL",
        f"aws://integration:integration@/?region_name=us-east-1&endpoint_url={quote(emulator.url, safe='')}",
    )
    trigger = HumanLoopTrigger(
        flow_definition_arn="arn:aws:sagemaker:us-east-1:123456789012:flow-definition/fd",
        human_loops_uri=f"s3://{BUCKET}/{KEY}",
        created_after="2026-11-26T00:00:00+00:00",
        min_completed_fraction=1.0,
        deadline="2026-11-27T00:00:00+00:00",
        aws_conn_id="aws_local",
    )

    assert asyncio.run(trigger.own_loop_names()) == frozenset(names)
