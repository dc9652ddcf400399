"""Running the DAG with the Airflow CLI on the local AWS, as the demo, the fault suite and the local
stack do: where things are, the environment of the demo's settings, a day run with
``airflow dags test`` (stopped when no task can advance it), the tables they print, a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import quote

from emulator.a2i import ReviewerConfig
from emulator.server import EmulatorConfig
from tools.seed import BUCKET, INITIAL_MODEL, PREFIX, VALIDATION_MANIFEST
from world.scenes import DEMO_WORLD

ROOT = Path(__file__).resolve().parents[1]
ENDPOINT = "active-learning-od"
AIRFLOW = str(Path(sys.executable).parent / "airflow")
# Reference reviewers answering after half a second, and simulated AWS state changes in seconds.
REVIEWER = ReviewerConfig(delay=0.5, noise=0.02)
TIMINGS = EmulatorConfig(0.5, 1.0, 0.2)


def airflow_env(home: Path, url: str, classes: tuple[str, ...] = DEMO_WORLD.classes) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "AL_"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__LOGGING__BASE_LOG_FOLDER=str(home / "logs"),
        AIRFLOW_CONN_AWS_DEFAULT=(
            f"aws://demo:demo@/?region_name=us-east-1&endpoint_url={quote(url, safe='')}"
        ),
        AWS_ACCESS_KEY_ID="demo",
        AWS_SECRET_ACCESS_KEY="demo",
        AWS_DEFAULT_REGION="us-east-1",
        AL_BUCKET=BUCKET,
        AL_PREFIX=PREFIX,
        AL_ROLE_ARN="arn:aws:iam::123456789012:role/ActiveLearningDemo",
        AL_WORKTEAM_ARN="arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/demo-reviewers",
        AL_ENDPOINT_NAME=ENDPOINT,
        AL_INITIAL_MODEL_DATA_URL=INITIAL_MODEL,
        AL_CLASS_NAMES=",".join(classes),
        # a review budget a day, so the selection strategy chooses what is labelled
        AL_MAX_REVIEWS="8",
        AL_MIN_NEW_LABELS="2",
        AL_VALIDATION_MANIFEST_URI=VALIDATION_MANIFEST,
        # the seeded initial model and validation set lie outside the loop's prefix: allow them
        AL_ALLOWED_S3_URIS=f"{INITIAL_MODEL},s3://{BUCKET}/validation/",
        AL_MAP_TOLERANCE="0.01",
        AL_WAITER_DELAY_SECONDS="1",
        AL_REVIEW_POLL_SECONDS="1",
        AL_REVIEW_TIMEOUT_HOURS="1",
        AL_RETRY_DELAY_SECONDS="5",
        # the package as Airflow loads it, then what the caller had (e.g. a test's botocore plugins)
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "plugins"), os.environ.get("PYTHONPATH")])),
    )
    return env


# ``airflow dags test`` logs this every second while no task can run: while a retry waits out its
# delay (5 s here), or forever when something else holds the day (a task stuck in a state no run
# of this process will change).
NOTHING_TO_RUN = b"No tasks to run"
BLOCKED_AFTER_SECONDS = 60.0


class DayBlocked(RuntimeError):
    """``airflow dags test`` said for a long while, and nothing else, that no task can run."""


def wait_unless_blocked(process: subprocess.Popen, log: Path, start: int, blocked_after: float) -> int:
    """The process's exit code.

    :raises DayBlocked: once its log said for ``blocked_after`` seconds, and nothing else, that no
        task can run.
    """
    position, nothing_since = start, None
    while process.poll() is None:
        time.sleep(0.5)
        with log.open("rb") as reader:
            reader.seek(position)
            lines = reader.readlines()
        complete = [line for line in lines if line.endswith(b"\n")]
        position += sum(len(line) for line in complete)
        for line in complete:
            if NOTHING_TO_RUN not in line:
                nothing_since = None
            elif nothing_since is None:
                nothing_since = time.monotonic()
        if nothing_since is not None and time.monotonic() - nothing_since >= blocked_after:
            raise DayBlocked(f"no task could run for {blocked_after:.0f} s; see {log}")
    return process.returncode


def run_process(
    command: list[str],
    env: dict[str, str],
    log: Path,
    watch: Callable[[subprocess.Popen[bytes]], None] | None = None,
    blocked_after: float = BLOCKED_AFTER_SECONDS,
) -> int:
    """Run a command in its own process group, output appended to ``log``; its return code.

    If the caller is interrupted, or the command is blocked (see :func:`wait_unless_blocked`), the
    whole process group goes too.

    :param watch: called with the running process (e.g. to kill it at some point); returns when
        the process may be waited for.
    :raises DayBlocked: when the command is blocked.
    """
    with log.open("ab") as out:
        start = out.tell()
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            if watch is not None:
                watch(process)
            return wait_unless_blocked(process, log, start, blocked_after)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def run(
    command: list[str], env: dict[str, str], log: Path, blocked_after: float = BLOCKED_AFTER_SECONDS
) -> None:
    """Run an Airflow command; exit the demo if it fails or is blocked."""
    try:
        returncode = run_process(command, env, log, blocked_after=blocked_after)
    except DayBlocked as blocked:
        sys.exit(f"{' '.join(command)}: {blocked}")
    if returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({returncode}); see {log}")


def logical_date(day: date) -> str:
    """The logical date of the run that processes ``day``: a run for D processes the day before D."""
    return (day + timedelta(days=1)).isoformat()


def print_table(rows: list[dict[str, Any]]) -> None:
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(row[c])) for row in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the caller binds it right away)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def terminate(signum: int, _frame: FrameType | None) -> None:
    """A SIGTERM handler that unwinds like Ctrl-C: every ``with`` and ``finally`` stops what it started."""
    raise KeyboardInterrupt(f"signal {signum}")
