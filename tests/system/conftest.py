"""System tests: the DAG under a real local Airflow (``python -m emulator.stack``, as ``make airflow``).

One stack per session, started by the same command as ``make airflow`` on free ports, with this
folder's DAGs (the loop's and a consumer of its model Asset), and stopped by the same command as
``make airflow-stop``; then no process of it may be left, nor a listening socket.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.stack import DAG_ID
from tests.system.helpers import ROOT, RunningStack, leftovers, start_stack, stop_stack

SYSTEM_DAGS = Path(__file__).parent / "dags"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/system/" in str(item.fspath):
            item.add_marker(pytest.mark.system)
            item.add_marker(pytest.mark.timeout(900))


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    dags = tmp_path_factory.mktemp("dags")
    for source in (ROOT / "dags" / f"{DAG_ID}.py", SYSTEM_DAGS / "model_consumer.py"):
        (dags / source.name).symlink_to(source)
    home = tmp_path_factory.mktemp("stack") / "airflow"
    running = start_stack(home, dags)
    try:
        yield running
    finally:
        if running.process.poll() is None:
            stop_stack(running)
    assert running.process.returncode == 0, running.log("scheduler")[-3000:]
    assert leftovers(running) == []
