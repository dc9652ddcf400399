"""The Learning page mounted in Airflow's real api-server, behind its authentication.

One api-server (``airflow api-server``, SimpleAuthManager as the local stack runs it, this
repository's plugins folder) over a database holding two runs of ``dags/learning_fixture.py``,
made by ``airflow dags test``: their ``day_summary`` XComs and Asset events are real. Then one
run's XCom is deleted (as clearing it does) and one run's review wait is made 30 hours old.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.learning_page.dom import parse
from tests.learning_page.records import day_record
from tools.airflow_runs import AIRFLOW, ROOT, free_port
from tools.stack import PASSWORD, USERNAME, AirflowApi

DAG_ID = "learning_fixture"
DAYS = ("2026-12-01", "2026-12-02")
RECORDS = {
    DAYS[0]: day_record(DAYS[0], routed=8, completed=7, labels=7, new_map=0.25, serving_map=0.25),
    DAYS[1]: day_record(DAYS[1], routed=3, completed=3, labels=3, new_map=None, serving_map=0.25),
}
PAGE = f"/active-learning/dags/{DAG_ID}"


@dataclass
class ApiServer:
    url: str
    home: Path
    run_ids: dict[str, str]  # by day

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        request = urllib.request.Request(f"{self.url}{path}", headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def token(self) -> str:
        return AirflowApi(self.url).token()


def environment(home: Path, port: int) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "AL_"))}
    return {
        **env,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(Path(__file__).parent / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API_AUTH__JWT_SECRET": "learning-page-test-secret-of-32-bytes!",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "PYTHONPATH": str(ROOT / "plugins"),
        "LEARNING_RECORDS": json.dumps(RECORDS),
    }


def run(command: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(
        command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, f"{command}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    home = tmp_path_factory.mktemp("airflow")
    port = free_port()
    env = environment(home, port)
    (home / "passwords.json").write_text(json.dumps({USERNAME: PASSWORD}))
    run([AIRFLOW, "db", "migrate"], env)
    for day in DAYS:
        run([AIRFLOW, "dags", "test", DAG_ID, day], env)
    with sqlite3.connect(home / "airflow.db") as db:
        run_ids = dict(
            db.execute("SELECT date(logical_date), run_id FROM dag_run WHERE dag_id = ?", (DAG_ID,))
        )
        # the first day's run cleared: its XCom gone, its Asset event left
        db.execute("DELETE FROM xcom WHERE run_id = ? AND task_id = 'day_summary'", (run_ids[DAYS[0]],))
        # the second day's review wait deferred for 30 hours
        started = (datetime.now(UTC) - timedelta(hours=30)).strftime("%Y-%m-%d %H:%M:%S.%f")
        db.execute(
            "UPDATE task_instance SET state = 'deferred', start_date = ?, end_date = NULL "
            "WHERE run_id = ? AND task_id = 'wait_for_human_loops'",
            (started, run_ids[DAYS[1]]),
        )
    log = (home / "api-server.log").open("wb")
    process = subprocess.Popen(
        [AIRFLOW, "api-server"],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = ApiServer(f"http://127.0.0.1:{port}", home, run_ids)
    try:
        deadline = time.monotonic() + 120
        while not AirflowApi(server.url).healthy():
            assert process.poll() is None, (home / "api-server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the api-server did not start"
            time.sleep(0.5)
        yield server
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # its own session: the server and its worker
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        log.close()


def test_without_a_token_the_page_is_refused(api_server: ApiServer) -> None:
    assert api_server.get(PAGE)[0] == 401
    assert api_server.get(f"{PAGE}/days")[0] == 401
    assert api_server.get("/active-learning/dags/no_such_dag")[0] == 401  # says nothing of what exists


def test_an_invalid_token_is_refused(api_server: ApiServer) -> None:
    assert api_server.get(PAGE, {"Authorization": "Bearer not-a-jwt"})[0] == 403
    assert api_server.get(PAGE, {"Cookie": "_token=not-a-jwt"})[0] == 403


def test_with_a_token_the_page_shows_airflows_records(api_server: ApiServer) -> None:
    status, html = api_server.get(PAGE, {"Authorization": f"Bearer {api_server.token()}"})
    assert status == 200, html
    root = parse(html)
    rows = root.find("table", id="days").find_all("tr", data_day=True)
    # the first day from its Asset event (its XCom deleted), the second from its XCom
    assert [row.attrs["data-day"] for row in rows] == list(DAYS)
    for row, day in zip(rows, DAYS, strict=True):
        assert row.attrs["data-run-id"] == api_server.run_ids[day]
        assert row.find("a").attrs["href"] == f"../../dags/{DAG_ID}/runs/{api_server.run_ids[day]}"
        assert int(row.find(data_field="labels").attrs["data-value"]) == RECORDS[day]["labels"]["converted"]
    serving = root.find("svg", data_chart="map").find_all("circle", data_series="serving")
    assert [float(point.attrs["data-value"]) for point in serving] == [0.25, 0.25]
    assert root.find(id="starving")  # the latest day routed 3 of 8 below the target
    late = root.find(id="late-reviews")
    assert late.attrs["data-count"] == "1"
    assert api_server.run_ids[DAYS[1]] in late.text


def test_the_uis_cookie_authenticates_the_tab(api_server: ApiServer) -> None:
    """The Learning tab is a same-origin iframe: the browser sends the UI's ``_token`` cookie."""
    status, html = api_server.get(f"{PAGE}?late_after_hours=40", {"Cookie": f"_token={api_server.token()}"})
    assert status == 200, html
    assert parse(html).find(id="late-reviews").attrs["data-count"] == "0"  # 30 h is not late after 40


def test_the_days_as_json(api_server: ApiServer) -> None:
    status, body = api_server.get(f"{PAGE}/days", {"Authorization": f"Bearer {api_server.token()}"})
    assert status == 200, body
    data: dict[str, Any] = json.loads(body)
    assert [day["day"] for day in data["days"]] == list(DAYS)
    assert data["starving"] is True
    assert [wait["run_id"] for wait in data["late_reviews"]] == [api_server.run_ids[DAYS[1]]]


def test_an_unknown_dag_and_a_bad_limit(api_server: ApiServer) -> None:
    token = {"Authorization": f"Bearer {api_server.token()}"}
    assert api_server.get("/active-learning/dags/no_such_dag", token)[0] == 404
    assert api_server.get(f"{PAGE}?late_after_hours=-1", token)[0] == 422


def test_the_ui_offers_the_learning_tab_on_dags(api_server: ApiServer) -> None:
    plugins = AirflowApi(api_server.url)("GET", "/plugins")["plugins"]
    (plugin,) = [plugin for plugin in plugins if plugin["name"] == "active_learning"]
    (view,) = plugin["external_views"]
    assert (view["name"], view["destination"], view["url_route"]) == ("Learning", "dag", "learning")
    assert view["href"] == "active-learning/dags/{DAG_ID}"
    assert plugin["fastapi_apps"][0]["url_prefix"] == "/active-learning"
    assert AirflowApi(api_server.url)("GET", "/plugins/importErrors")["import_errors"] == []
