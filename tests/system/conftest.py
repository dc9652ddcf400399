"""System tests: the DAG under a real local Airflow (``python -m tools.stack``, as ``make airflow``).

One stack per session, started by the same command as ``make airflow`` on free ports, with this
folder's DAGs (the loop's and a consumer of its model Asset), and stopped by the same command as
``make airflow-stop``; then no process of it may be left, nor a listening socket.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from tests.system.helpers import (
    CONSUMER,
    ROOT,
    TERMINAL,
    RunningStack,
    dag_parsed,
    documented_command,
    leftovers,
    logged_in_browser,
    run_airflow_cli,
    runs,
    start_stack,
    stop_stack,
    wait_for,
)
from tools.stack import DAG_ID, seeded_days

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


@pytest.fixture(scope="session")
def backfill(stack: RunningStack) -> dict[str, Any]:
    """The backfill of the seeded days, created with docs/local-stack.md's command, run to the end."""
    wait_for(lambda: dag_parsed(stack.api, CONSUMER), 120, "the consumer DAG parsed")
    stack.api.unpause(CONSUMER)
    days = seeded_days(datetime.now(UTC).date())
    started = time.monotonic()
    backfill = documented_command("backfill", "create")
    backfill[backfill.index("--from-date") + 1] = days[0].isoformat()
    backfill[backfill.index("--to-date") + 1] = days[-1].isoformat()
    run_airflow_cli(stack, backfill)
    stack.api.unpause(DAG_ID)

    def finished() -> list[dict[str, Any]] | None:
        current = runs(stack, DAG_ID)
        return current if len(current) == len(days) and {r["state"] for r in current} <= TERMINAL else None

    finished_runs = wait_for(finished, 600, "the 3 backfilled runs finished")
    seconds = time.monotonic() - started
    print(f"\nbackfill of {len(days)} days through the scheduler: {seconds:.0f} s")
    return {"days": days, "runs": finished_runs, "seconds": seconds}


@pytest.fixture(scope="module")
def browser(stack: RunningStack) -> Iterator[WebDriver]:
    """Headless Chromium (Debian's ``chromium`` and ``chromium-driver``) logged in to the stack's UI."""
    with logged_in_browser(stack) as driver:
        yield driver
