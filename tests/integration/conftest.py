"""Integration tests run against the embedded local AWS on 127.0.0.1 with real boto3 clients."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from emulator.a2i import ReviewerConfig
from emulator.server import Emulator, EmulatorConfig
from tests.aws_contract import plugin_environment, read_calls
from tools.label_studio import LabelStudioServer

BUCKET = "integration-bucket"
ROLE = "arn:aws:iam::123456789012:role/Integration"
WORKTEAM = "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/integration"
ROOT = Path(__file__).parents[2]


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


@dataclass(frozen=True)
class EndToEndDay:
    """One day of the real DAG (``tools.demo``: ``airflow dags test``) and every AWS call made in it.

    :param output: the demo's output folder (summary.json, airflow.log, Airflow home).
    :param calls: every botocore call of every process (the Airflow tasks, the emulator, the demo's
        own checks), as ``tests.aws_contract.CallRecorder`` records them.
    :param lineage_log: the OpenLineage events of the run (the provider's file transport, one JSON
        event a line).
    """

    returncode: int
    stdout: str
    output: Path
    calls: list[dict[str, Any]]
    lineage_log: Path

    @property
    def airflow_log(self) -> str:
        log = self.output / "airflow.log"
        return log.read_text() if log.exists() else ""

    @property
    def lineage_events(self) -> list[dict[str, Any]]:
        if not self.lineage_log.exists():
            return []
        return [json.loads(line) for line in self.lineage_log.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def end_to_end_day(tmp_path_factory: pytest.TempPathFactory) -> EndToEndDay:
    output = tmp_path_factory.mktemp("end-to-end-day")
    call_log = tmp_path_factory.mktemp("aws-calls") / "calls.jsonl"  # the demo empties its output folder
    lineage_log = tmp_path_factory.mktemp("openlineage") / "events.jsonl"
    environment = {
        **os.environ,
        **plugin_environment(call_log),
        # the OpenLineage provider (requirements-dev.txt) writes every event of the day's tasks to a
        # file; OPENLINEAGE__* variables reach the tasks (the demo keeps all but AIRFLOW* and AL_*)
        "OPENLINEAGE__TRANSPORT__TYPE": "file",
        "OPENLINEAGE__TRANSPORT__LOG_FILE_PATH": str(lineage_log),
        "OPENLINEAGE__TRANSPORT__APPEND": "true",
        # the recorder (tests.aws_contract) importable by every process the demo starts
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", "tools.demo", "--output", str(output)]
    result = subprocess.run(
        [*command, "--days", "1", "--images-per-day", "30"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    return EndToEndDay(
        result.returncode, result.stdout + result.stderr, output, read_calls(call_log), lineage_log
    )


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioServer]:
    """A real Label Studio (``.venv-label-studio``) on a free 127.0.0.1 port, with an admin and a
    personal access token; stopped at the end, and nothing of it may be left running."""
    server = LabelStudioServer(tmp_path_factory.mktemp("label-studio"))
    with server:
        yield server
    assert not server.leftovers(), server.leftovers()
