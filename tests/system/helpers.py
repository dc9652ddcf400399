"""Start and stop the local stack as ``make airflow`` and ``make airflow-stop`` do; read its REST API."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.support import chromium
from tools.stack import PASSWORD, USERNAME, AirflowApi

ROOT = Path(__file__).parents[2]
# docs/local-stack.md's Airflow CLI recipes, each run by a test as written there
STACK_CLI = re.compile(r"^AIRFLOW_HOME=airflow-stack (\.venv/bin/airflow .*)$", re.MULTILINE)
CONSUMER = "model_consumer"  # tests/system/dags/model_consumer.py
TERMINAL = {"success", "failed"}


@dataclass
class RunningStack:
    home: Path
    api: AirflowApi
    aws_url: str
    process: subprocess.Popen
    sessions: set[int]  # each component runs in a session of its own: its children stay in it
    label_studio_url: str | None = None
    # the Celery stack's PostgreSQL and Redis ports, and PostgreSQL's temporary data folder
    ports: tuple[int, ...] = ()
    data_folder: str | None = None

    def log(self, name: str) -> str:
        return (self.home / f"{name}.log").read_text(errors="replace")


def stack_command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "tools.stack", *arguments]


def start_stack(
    home: Path, dags: Path | None = None, *options: str, env: Mapping[str, str] | None = None
) -> RunningStack:
    """``make airflow`` on free ports: wait for its banner, read where it serves.

    :param env: variables added to this process's environment (e.g. ``AL_*`` settings).
    """
    command = stack_command("up", "--port", "0", "--home", str(home), "--no-backfill", *options)
    if dags is not None:
        command += ["--dags-folder", str(dags)]
    output = home.parent / f"{home.name}.out"
    with output.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    deadline = time.monotonic() + 600  # Label Studio's first start migrates its database
    while b"Airflow UI:" not in output.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"the stack did not start:\n{output.read_text()}")
        time.sleep(0.5)
    state = json.loads((home / "stack.json").read_text())
    sessions = {process.pid, *state["pids"].values()}
    return RunningStack(
        home,
        AirflowApi(state["api_url"]),
        state["aws_url"],
        process,
        sessions,
        state["label_studio_url"],
        tuple(state["ports"].values()),
        state["data_folder"],
    )


def leftovers(stack: RunningStack) -> list[str]:
    """Processes of the stack still alive (in a component's session, or naming its home: Airflow
    renames its processes, which can hide their command line and environment), its ports, and
    PostgreSQL's data folder."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "environ"]):
        try:
            session = os.getsid(process.info["pid"])
        except OSError:  # gone meanwhile
            continue
        named = str(stack.home) in " ".join(process.info["cmdline"] or [])
        environ = process.info["environ"] or {}
        if session in stack.sessions or named or environ.get("AIRFLOW_HOME") == str(stack.home):
            found.append(f"process {process.info['pid']}: {process.info['cmdline']}")
    urls = (stack.api.url, stack.aws_url, stack.label_studio_url)
    ports = {int(url.rsplit(":", 1)[1]) for url in urls if url} | set(stack.ports)
    for connection in psutil.net_connections(kind="inet"):
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port in ports:
            found.append(f"listening on {connection.laddr}")
    if stack.data_folder and Path(stack.data_folder).exists():
        found.append(f"folder {stack.data_folder}")
    return found


def stop_stack(stack: RunningStack) -> None:
    """``make airflow-stop``."""
    subprocess.run(stack_command("stop", "--home", str(stack.home)), cwd=ROOT, check=True, timeout=120)
    stack.process.wait(timeout=60)


def documented_command(*subcommand: str) -> list[str]:
    """The words of docs/local-stack.md's ``airflow <subcommand> ...`` recipe, as written there."""
    text = (ROOT / "docs" / "local-stack.md").read_text()
    recipes = [shlex.split(line) for line in STACK_CLI.findall(text)]
    (words,) = [words for words in recipes if words[1 : 1 + len(subcommand)] == list(subcommand)]
    return words


def run_airflow_cli(stack: RunningStack, words: list[str]) -> str:
    """A recipe's command with ``AIRFLOW_HOME`` set to this stack's home, from the repository's root."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "AL_"))}
    env["AIRFLOW_HOME"] = str(stack.home)
    command = [str(ROOT / words[0]), *words[1:]]
    for _ in range(10):  # SQLite: "database is locked" while the scheduler writes
        done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
        if done.returncode == 0 or "database is locked" not in done.stderr + done.stdout:
            break
        time.sleep(2)
    assert done.returncode == 0, f"{shlex.join(words)}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done.stdout


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(1)
    return result


def task_instances(api: AirflowApi, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
    found = api("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances")["task_instances"]
    return {ti["task_id"]: ti for ti in found}


def dag_parsed(api: AirflowApi, dag_id: str) -> bool:
    try:
        return api.dag_parsed(dag_id)
    except OSError:
        return False


def runs(stack: RunningStack, dag_id: str) -> list[dict[str, Any]]:
    found = stack.api("GET", f"/dags/{dag_id}/dagRuns?limit=100&order_by=logical_date")["dag_runs"]
    return sorted(found, key=lambda run: run["logical_date"] or run["run_after"])


@contextmanager
def logged_in_browser(stack: RunningStack) -> Iterator[WebDriver]:
    """Headless Chromium (Debian's ``chromium`` and ``chromium-driver``) logged in to the stack's UI."""
    chromium_path, chromedriver = chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium_path
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.implicitly_wait(15)
    try:
        driver.get(stack.api.url)
        driver.find_element(By.NAME, "username").send_keys(USERNAME)
        driver.find_element(By.NAME, "password").send_keys(PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        WebDriverWait(driver, 30).until(lambda d: "/auth/login" not in d.current_url)
        yield driver
    finally:
        driver.quit()
