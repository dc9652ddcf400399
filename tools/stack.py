"""``make airflow``: the embedded local AWS and a real local Airflow 3.3, with no container engine.

Runs, each as its own process: the local AWS (``python -m emulator serve``), its seed
(``python -m tools.seed``: bucket, weak initial model, validation set, the last 3 days of images),
``airflow db migrate``, then the api-server, scheduler, dag-processor and triggerer (LocalExecutor;
SQLite in the Airflow home unless ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` says otherwise) with the
demo's settings (:func:`tools.airflow_runs.airflow_env`; the caller's own ``AL_*`` variables win).
It prints the UI's URL and login and keeps running until ``python -m tools.stack stop``
(``make airflow-stop``) or Ctrl-C, which stop every process it started, their children included.

``--executor celery`` (``make airflow EXECUTOR=celery``) runs a production-shaped Airflow instead:
Debian's PostgreSQL (the metadata database and Celery's result backend) and Redis (the broker),
each started from its binaries on a free 127.0.0.1 port with its data in a temporary folder, the
CeleryExecutor and two ``airflow celery worker`` processes, each reporting its own task-instance
host name (``tools.worker_hostname``).

docker-compose.yaml runs the same commands with the same settings: :data:`AIRFLOW_COMPONENTS`,
:func:`emulator_command`, :func:`seed_command` and :func:`shared_settings` are what both run, and
``tests/test_docker_compose.py`` compares them with the compose file.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil

from tools.airflow_runs import ENDPOINT, ROOT, airflow_env, free_port
from tools.label_studio import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    LOCAL_PORT,
    PERSON_REVIEW_SETTINGS,
    LabelStudioServer,
)
from world.scenes import EASY_WORLD

# The world tools.seed uploads by default (and docker-compose names in AL_CLASS_NAMES).
WORLD = EASY_WORLD

DAG_ID = "active_learning"
# dags/active_learning.py's pool for the demo's endpoint (active_learning.naming.model_update_pool)
MODEL_UPDATE_POOL = f"active_learning__{ENDPOINT}"
USERNAME = PASSWORD = "admin"
SEEDED_DAYS = 3
# The local AWS's reference reviewer answers each human loop after this delay.
REVIEWER_ARGUMENTS = ("--review-delay", "5", "--noise", "0.02")

# What each Airflow component runs; docker-compose.yaml's services run exactly these.
AIRFLOW_INIT: tuple[tuple[str, ...], ...] = (
    ("airflow", "db", "migrate"),
    # the pool of one slot (deferred tasks counted) that serializes the DAG's train, gate and update
    (
        "airflow",
        "pools",
        "set",
        MODEL_UPDATE_POOL,
        "1",
        "active-learning model updates",
        "--include-deferred",
    ),
)
AIRFLOW_COMPONENTS: dict[str, tuple[str, ...]] = {
    "api-server": ("airflow", "api-server"),
    # every component sees the same log folder (docker-compose: one volume), so the api-server reads
    # the task and trigger logs itself: no log server listening on 0.0.0.0 (Airflow binds it there)
    "scheduler": ("airflow", "scheduler", "--skip-serve-logs"),
    "dag-processor": ("airflow", "dag-processor"),
    "triggerer": ("airflow", "triggerer", "--skip-serve-logs"),
}

# Settings of a local Airflow on the local AWS, wherever it runs (here or in docker-compose):
# SimpleAuthManager (Airflow 3's default) with one known user, LocalExecutor, short loops so that a
# day's runs take seconds between steps, not minutes. LocalExecutor on SQLite works in Airflow 3
# (SQLite in WAL mode, as ``airflow standalone`` runs it); use PostgreSQL for anything shared.
RUNTIME_SETTINGS: dict[str, str] = {
    "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
    "AIRFLOW__CORE__PARALLELISM": "8",
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__AUTH_MANAGER": (
        "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
    ),
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
    "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
    "AIRFLOW__API__WORKERS": "1",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
    "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "1",
    "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
    # Under a scheduler, a trigger must not fire within seconds of its task's deferral: the deferring
    # try's exit can reach the scheduler 5-7 s late on a busy machine, and a trigger event handled
    # before it loses the try (apache/airflow#72716). Triggers check first one interval after the
    # deferral: 10 s here (the demo's 1 s runs under `airflow dags test`, which has no such race).
    "AL_WAITER_DELAY_SECONDS": "10",
    "AL_REVIEW_POLL_SECONDS": "10",
}
EXECUTORS = ("local", "celery")
# The Celery stack's workers: two, so that a day's tasks spread over both; a few slots each.
CELERY_WORKERS = ("worker-1", "worker-2")
CELERY_SETTINGS: dict[str, str] = {
    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
    "AIRFLOW__CELERY__WORKER_CONCURRENCY": "4",
    "AIRFLOW__OPERATORS__DEFAULT_QUEUE": "default",
}
POSTGRES_USER = "postgres"  # the system user Debian's package creates: PostgreSQL refuses root


# Keys of tools.airflow_runs.airflow_env that name places on this machine, not settings.
LOCAL_PLACES = (
    "AIRFLOW_HOME",
    "AIRFLOW__CORE__DAGS_FOLDER",
    "AIRFLOW__CORE__PLUGINS_FOLDER",
    "AIRFLOW__LOGGING__BASE_LOG_FOLDER",
    "AIRFLOW_CONN_AWS_DEFAULT",
    "PYTHONPATH",
)


DEMO_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
# What each place sets for itself: docker-compose.yaml sets these too, with its own values.
PLACE_SETTINGS = (
    "AIRFLOW_CONN_AWS_DEFAULT",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW__API_AUTH__JWT_SECRET",
)


def shared_settings() -> dict[str, str]:
    """The environment both this stack and docker-compose give every Airflow process: the demo's
    ``AL_*`` settings and AWS credentials (:func:`tools.airflow_runs.airflow_env`) and
    :data:`RUNTIME_SETTINGS`; not the places (home, folders, URLs, ports, secrets)."""
    demo = airflow_env(Path("/airflow-home"), "http://aws", WORLD.classes)
    settings = {
        key: value
        for key, value in demo.items()
        if (key.startswith(("AL_", "AIRFLOW")) or key in DEMO_CREDENTIALS) and key not in LOCAL_PLACES
    }
    return {**settings, **RUNTIME_SETTINGS}


def emulator_command(host: str, port: int, state_file: str) -> list[str]:
    return [
        "python", "-m", "emulator", "serve", "--host", host, "--port", str(port),
        "--state-file", state_file, *REVIEWER_ARGUMENTS,
    ]  # fmt: skip


def seed_command(url: str, prefixes: tuple[str, ...] = ()) -> list[str]:
    """The seed, with images under each loop's prefix (none given: the demo's)."""
    extra = [word for prefix in prefixes for word in ("--prefix", prefix)]
    return ["python", "-m", "tools.seed", "--url", url, "--days", str(SEEDED_DAYS), *extra]


def pool_command(pool: str) -> tuple[str, ...]:
    """The pool of one slot (deferred tasks counted) that serializes a loop's train, gate and update."""
    return ("airflow", "pools", "set", pool, "1", "active-learning model updates", "--include-deferred")


def stack_loops(env: Mapping[str, str]) -> list[Any]:
    """The loops the DAG file makes of ``env`` (``AL_LOOPS_FILE``, else the one ``active_learning``)."""
    sys.path.insert(0, str(ROOT / "plugins"))  # the package, as Airflow loads it
    from active_learning.loops import read_loops

    return read_loops(env)


def loop_pool(loop: Any) -> str:
    """The model-update pool of a loop (its knob, or the one of its endpoint)."""
    from active_learning.naming import model_update_pool

    return loop.knobs.model_update_pool or model_update_pool(loop.specs["endpoint_name"]["default"])


def seeded_days(today: date) -> list[date]:
    """The days ``tools.seed`` uploads images for by default: the last 3 before today."""
    return [today - timedelta(days=offset) for offset in range(SEEDED_DAYS, 0, -1)]


def init_script() -> str:
    """:data:`AIRFLOW_INIT` as one shell command (docker-compose's airflow-init service runs it)."""
    return " && ".join(shlex.join(command) for command in AIRFLOW_INIT)


# docker-compose: every Airflow service reads the JWT secret from this file of a shared volume
# (AIRFLOW__API_AUTH__JWT_SECRET_CMD), which airflow-init fills once with 48 random bytes.
COMPOSE_JWT_SECRET_FILE = "/opt/airflow/secrets/jwt_secret"


def compose_init_script() -> str:
    """docker-compose's airflow-init: the JWT secret (kept if it exists), then :func:`init_script`."""
    generate = (
        f"test -s {COMPOSE_JWT_SECRET_FILE} || python -c "
        "'import secrets, sys; sys.stdout.write(secrets.token_urlsafe(48))' "
        f"> {COMPOSE_JWT_SECRET_FILE}"
    )
    return f"umask 077 && ({generate}) && {init_script()}"


def backfill_command(dag_id: str, first: str, last: str) -> tuple[str, ...]:
    """The CLI twin of :meth:`AirflowApi.backfill`: the same days, reprocessing and run limit."""
    return (
        "airflow", "backfill", "create", "--dag-id", dag_id, "--from-date", first, "--to-date", last,
        "--reprocess-behavior", "failed", "--max-active-runs", str(SEEDED_DAYS),
    )  # fmt: skip


def seeded_days_script(dag_id: str = DAG_ID) -> str:
    """docker-compose's airflow-seeded-days: once the dag-processor has put the DAG in the database
    (up to 5 minutes), a backfill of the seeded days (:func:`seeded_days`, computed in the container
    from its clock) and the DAG unpaused, as ``make airflow`` does through the REST API."""
    first, last = f'"$(date -u -d "{SEEDED_DAYS} days ago" +%F)"', '"$(date -u -d "1 day ago" +%F)"'
    backfill = " ".join(backfill_command(dag_id, first, last))  # unquoted: the shell expands the dates
    return (
        f"for attempt in $(seq 60); do airflow dags details {dag_id} >/dev/null 2>&1 && break; sleep 5; done"
        f" && {backfill} && airflow dags unpause {dag_id}"
    )


def postgres_binaries() -> Path:
    """Debian's PostgreSQL programs (``apt-get install postgresql``), the newest version's."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise RuntimeError("no PostgreSQL: apt-get install postgresql (see docs/local-stack.md)")
    return Path(found[-1]).parent


def redis_server() -> str:
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server: apt-get install redis-server (see docs/local-stack.md)")
    return found


def celery_worker_command(name: str, home: Path) -> list[str]:
    """A Celery worker of its own name and pid file (the default pid file is one per home)."""
    return [
        "airflow", "celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency",
        CELERY_SETTINGS["AIRFLOW__CELERY__WORKER_CONCURRENCY"], "--queues", "default",
        "--pid", str(home / f"{name}.pid"), "--skip-serve-logs",
    ]  # fmt: skip


def local_command(command: list[str] | tuple[str, ...]) -> list[str]:
    """A shared command as this machine runs it: ``python`` and ``airflow`` from this venv."""
    program, *arguments = command
    if program == "python":
        return [sys.executable, *arguments]
    if program == "airflow":
        return [str(Path(sys.executable).parent / "airflow"), *arguments]
    return list(command)


class AirflowApi:
    """A tiny client of Airflow's REST API (``/api/v2``) with a SimpleAuthManager login."""

    def __init__(self, url: str, username: str = USERNAME, password: str = PASSWORD) -> None:
        self.url = url.rstrip("/")
        self.username = username
        self.password = password
        self._token: str | None = None

    def _send(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as err:  # say what the API said
            err.msg = f"{err.msg}: {method} {path}: {err.read().decode(errors='replace')[:2000]}"
            raise
        return json.loads(text) if text else None

    def token(self) -> str:
        if self._token is None:
            self._token = self._send(
                "POST", "/auth/token", {"username": self.username, "password": self.password}
            )["access_token"]
        return self._token

    def __call__(self, method: str, path: str, body: Any = None) -> Any:
        return self._send(method, f"/api/v2{path}", body, self.token())

    def healthy(self) -> bool:
        try:
            health = self._send("GET", "/api/v2/monitor/health")
        except (OSError, ValueError):
            return False
        return health.get("metadatabase", {}).get("status") == "healthy"

    def dag_parsed(self, dag_id: str) -> bool:
        try:
            self("GET", f"/dags/{dag_id}")
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return False
            raise
        return True

    def backfill(self, dag_id: str, first: date, last: date) -> dict[str, Any]:
        """Create a backfill of the runs with logical dates ``first``..``last`` (each processes that day).

        On SQLite the API refuses it (503, "Database is locked") while the scheduler or the
        dag-processor writes: it is asked again, a few times.
        """
        for attempt in range(10):
            try:
                return self._create_backfill(dag_id, first, last)
            except urllib.error.HTTPError as err:
                if err.code != 503 or attempt == 9:
                    raise
                time.sleep(2)
        raise AssertionError("unreachable")

    def _create_backfill(self, dag_id: str, first: date, last: date) -> dict[str, Any]:
        return self(
            "POST",
            "/backfills",
            {
                "dag_id": dag_id,
                "from_date": f"{first.isoformat()}T00:00:00Z",
                "to_date": f"{last.isoformat()}T00:00:00Z",
                "reprocess_behavior": "failed",  # a day whose run failed is run again
                "max_active_runs": SEEDED_DAYS,
            },
        )

    def unpause(self, dag_id: str) -> None:
        self("PATCH", f"/dags/{dag_id}", {"is_paused": False})


def wait_until(check: Any, timeout: float, what: str, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached within {timeout:.0f} s")
        time.sleep(interval)


@dataclass
class Stack:
    """The local AWS and a local Airflow, each component a process of its own.

    :param home: the Airflow home (database, logs, passwords file); emptied at start.
    :param api_port: the api-server's (and UI's) port; 0 picks a free one.
    :param sql_alchemy_conn: the metadata database; default SQLite in ``home``.
    :param overrides: extra environment for every Airflow process (e.g. a test's settings).
    :param label_studio_port: with a port (0: a free one), a local Label Studio reviews instead of
        the local AWS's A2I reviewers: a person answers in the browser; its data in ``home``.
    :param executor: ``local`` (LocalExecutor) or ``celery`` (PostgreSQL, Redis, CeleryExecutor and
        two Celery workers).
    """

    home: Path
    api_port: int = 0
    sql_alchemy_conn: str | None = None
    overrides: Mapping[str, str] = field(default_factory=dict)
    label_studio_port: int | None = None
    executor: str = "local"
    processes: dict[str, subprocess.Popen] = field(default_factory=dict, init=False)
    aws_url: str = field(default="", init=False)
    api_url: str = field(default="", init=False)
    label_studio: LabelStudioServer | None = field(default=None, init=False)
    dag_ids: list[str] = field(default_factory=list, init=False)
    # the Celery stack's PostgreSQL and Redis: their ports, settings and data folder
    ports: dict[str, int] = field(default_factory=dict, init=False)
    celery_settings: dict[str, str] = field(default_factory=dict, init=False)
    data_folder: Path | None = field(default=None, init=False)

    @property
    def state_file(self) -> Path:
        return self.home / "stack.json"

    def log(self, name: str) -> Path:
        return self.home / f"{name}.log"

    def _spawn(
        self, name: str, command: list[str], env: Mapping[str, str], user: str | None = None
    ) -> subprocess.Popen:
        with self.log(name).open("ab") as out:
            # its own session: Ctrl-C reaches this supervisor only, which stops everyone in order
            process = subprocess.Popen(
                local_command(command),
                cwd=ROOT,
                env=dict(env),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=user,
                group=user,
                extra_groups=[] if user else None,
            )
        self._adopt(name, process)
        return process

    def _adopt(self, name: str, process: subprocess.Popen) -> None:
        self.processes[name] = process
        self._write_state()

    def _write_state(self) -> None:
        self.state_file.write_text(
            json.dumps(
                {
                    "supervisor": os.getpid(),
                    "pids": {name: process.pid for name, process in self.processes.items()},
                    "api_url": self.api_url,
                    "aws_url": self.aws_url,
                    "label_studio_url": self.label_studio.url if self.label_studio else None,
                    "executor": self.executor,
                    "ports": self.ports,
                    "data_folder": str(self.data_folder) if self.data_folder else None,
                }
            )
        )

    def _run(
        self, name: str, command: list[str], env: Mapping[str, str], timeout: float, user: str | None = None
    ) -> None:
        process = self._spawn(name, command, env, user)
        try:
            returncode = process.wait(timeout=timeout)
        finally:
            del self.processes[name]
            stop_process_tree(process.pid)
        if returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({returncode}); see {self.log(name)}")

    def airflow_environment(self) -> dict[str, str]:
        env = airflow_env(self.home, self.aws_url, WORLD.classes)
        env.update(shared_settings())
        env.update(
            AIRFLOW__API__HOST="127.0.0.1",
            AIRFLOW__API__PORT=str(self.api_port),
            AIRFLOW__API__BASE_URL=self.api_url,
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{self.api_url}/execution/",
            AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_urlsafe(32),
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(self.home / "passwords.json"),
        )
        if self.sql_alchemy_conn:
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = self.sql_alchemy_conn
        env.update(self.celery_settings)
        if self.label_studio is not None:
            env.update(self.label_studio.reviewing_settings(), **PERSON_REVIEW_SETTINGS)
        # the caller's own settings win (AL_REQUIRE_APPROVAL=true make airflow)
        env.update({key: value for key, value in os.environ.items() if key.startswith("AL_")})
        if env.get("AL_LOOPS_FILE"):  # every process, whatever its folder, reads the same file
            env["AL_LOOPS_FILE"] = str(Path(env["AL_LOOPS_FILE"]).resolve())
        env.update(self.overrides)
        return env

    def start(self, timeout: float = 240.0) -> Stack:
        shutil.rmtree(self.home, ignore_errors=True)
        self.home.mkdir(parents=True)
        self.home = self.home.resolve()  # Airflow's SQLite URL needs an absolute path
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout: float) -> None:
        if self.executor == "celery":
            self._start_postgres()
            self._start_redis()
        emulator_state = self.home / "emulator.json"
        self._spawn("aws", emulator_command("127.0.0.1", 0, str(emulator_state)), os.environ)
        wait_until(emulator_state.exists, 60, f"the local AWS (see {self.log('aws')})", 0.2)
        self.aws_url = json.loads(emulator_state.read_text())["url"]
        if self.label_studio_port is not None:
            self.label_studio = LabelStudioServer(
                self.home / "label-studio", self.label_studio_port, log_path=self.log("label-studio")
            )
            # registered before it is ready: a stop while it migrates its database stops it too
            self.label_studio.start(on_spawn=lambda process: self._adopt("label-studio", process))
        self.api_port = self.api_port or free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        env = self.airflow_environment()
        loops = stack_loops(env)
        self.dag_ids = [loop.dag_id for loop in loops]
        prefixes = tuple(dict.fromkeys(loop.specs["prefix"]["default"] for loop in loops))
        self._run("aws-seed", seed_command(self.aws_url, prefixes), os.environ, 300)
        (self.home / "passwords.json").write_text(json.dumps({USERNAME: PASSWORD}))
        pools = [
            pool_command(pool) for pool in dict.fromkeys(map(loop_pool, loops)) if pool != MODEL_UPDATE_POOL
        ]
        for command in [*AIRFLOW_INIT, *pools]:
            self._run("airflow-init", list(command), env, 300)
        for name, command in AIRFLOW_COMPONENTS.items():
            self._spawn(name, list(command), env)
        if self.executor == "celery":
            for worker in CELERY_WORKERS:
                worker_env = {
                    **env,
                    # tools.worker_hostname, importable from the repository's root
                    "PYTHONPATH": os.pathsep.join([str(ROOT), env["PYTHONPATH"]]),
                    "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tools.worker_hostname.hostname",
                    "STACK_WORKER_HOSTNAME": worker,
                }
                self._spawn(worker, celery_worker_command(worker, self.home), worker_env)
        api = AirflowApi(self.api_url)

        def ready() -> bool:
            self._check_alive()
            return api.healthy() and all(api.dag_parsed(dag_id) for dag_id in self.dag_ids)

        wait_until(ready, timeout, f"the api-server and the DAGs {self.dag_ids} (logs in {self.home})")

    def _start_postgres(self) -> None:
        """An empty PostgreSQL cluster on a free port (TCP on 127.0.0.1 only, password login), and
        the ``airflow`` database. As root it runs as Debian's ``postgres`` user, its data in a
        temporary folder that user owns (a test's home may lie under a folder only root enters)."""
        import psycopg2  # installed with the Celery stack's requirements (requirements-dev.txt)

        binaries = postgres_binaries()
        user = POSTGRES_USER if os.geteuid() == 0 else None
        self.data_folder = Path(tempfile.mkdtemp(prefix="airflow-stack-postgres-"))
        self._write_state()  # removed by a stop from now on
        if user:
            shutil.chown(self.data_folder, user, user)
        password = secrets.token_urlsafe(24)
        password_file = self.data_folder / "password"
        password_file.write_text(password)
        if user:
            shutil.chown(password_file, user, user)
        initdb = [
            str(binaries / "initdb"), "--pgdata", str(self.data_folder / "data"), "--username", "airflow",
            "--pwfile", str(password_file), "--auth", "scram-sha-256", "--encoding", "UTF8",
            "--no-locale", "--no-sync",
        ]  # fmt: skip
        self._run("postgres-init", initdb, os.environ, 120, user)
        password_file.unlink()
        port = self.ports["postgres"] = free_port()
        # a throwaway cluster: durability traded for speed
        server = [
            str(binaries / "postgres"), "-D", str(self.data_folder / "data"), "-p", str(port),
            "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
        ]  # fmt: skip
        self._spawn("postgres", server, os.environ, user)

        def connect() -> Any:
            return psycopg2.connect(
                host="127.0.0.1", port=port, user="airflow", password=password, dbname="postgres"
            )

        def accepting() -> bool:
            self._check_alive()
            try:
                connect().close()
            except psycopg2.OperationalError:
                return False
            return True

        wait_until(accepting, 60, f"PostgreSQL (see {self.log('postgres')})", 0.2)
        connection = connect()
        connection.autocommit = True  # CREATE DATABASE runs outside a transaction
        try:
            with connection.cursor() as cursor:  # not `with connection`: that opens a transaction
                cursor.execute("CREATE DATABASE airflow")
        finally:
            connection.close()
        address = f"airflow:{password}@127.0.0.1:{port}/airflow"
        self.celery_settings.update(
            CELERY_SETTINGS,
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"postgresql+psycopg2://{address}",
            AIRFLOW__CELERY__RESULT_BACKEND=f"db+postgresql+psycopg2://{address}",
        )
        self._write_state()

    def _start_redis(self) -> None:
        """Redis on a free port: 127.0.0.1 only, a password, nothing saved to disk."""
        import redis

        port = self.ports["redis"] = free_port()
        password = secrets.token_urlsafe(24)
        folder = self.home / "redis"
        folder.mkdir()
        config = folder / "redis.conf"  # the password stays out of the command line
        config.write_text(
            f"port {port}\nbind 127.0.0.1\nprotected-mode yes\nrequirepass {password}\n"
            f'save ""\nappendonly no\ndir {folder}\n'
        )
        config.chmod(0o600)
        self._spawn("redis", [redis_server(), str(config)], os.environ)
        client = redis.Redis(host="127.0.0.1", port=port, password=password)

        def answering() -> bool:
            self._check_alive()
            try:
                return bool(client.ping())
            except redis.exceptions.ConnectionError:
                return False

        wait_until(answering, 30, f"Redis (see {self.log('redis')})", 0.2)
        client.close()
        self.celery_settings["AIRFLOW__CELERY__BROKER_URL"] = f"redis://:{password}@127.0.0.1:{port}/0"
        self._write_state()

    def _check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited ({process.returncode}); see {self.log(name)}")

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every process, the Airflow components first, their children included."""
        for name in reversed(list(self.processes)):
            process = self.processes[name]
            if name == "postgres":  # a fast shutdown: the postmaster stops its own children
                stop_postgres(process.pid, timeout)
            stop_process_tree(process.pid, timeout)
        self.processes.clear()
        if self.data_folder is not None:
            shutil.rmtree(self.data_folder, ignore_errors=True)
        self.state_file.unlink(missing_ok=True)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def stop_process_tree(pid: int, timeout: float = 30.0) -> None:
    """SIGTERM a process and every descendant, wait, then SIGKILL what is left."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for process in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
    _, alive = psutil.wait_procs(tree, timeout=timeout)
    # children started while stopping (a task's last heartbeat) go too
    with contextlib.suppress(psutil.NoSuchProcess):
        alive += root.children(recursive=True)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=5)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it when it was ours


def stop_postgres(pid: int, timeout: float = 30.0) -> None:
    """SIGINT, PostgreSQL's fast shutdown (SIGTERM waits for every client to disconnect)."""
    with contextlib.suppress(psutil.NoSuchProcess):
        postmaster = psutil.Process(pid)
        postmaster.send_signal(signal.SIGINT)
        with contextlib.suppress(psutil.TimeoutExpired):
            postmaster.wait(timeout)


@contextlib.contextmanager
def stop_signals() -> Iterator[threading.Event]:
    """An event set by SIGTERM (``make airflow-stop``) or SIGINT (Ctrl-C)."""
    stopped = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stopped.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stopped
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def up(args: argparse.Namespace) -> None:
    with stop_signals() as stopped:
        overrides = (
            {"AIRFLOW__CORE__DAGS_FOLDER": str(args.dags_folder.resolve())} if args.dags_folder else {}
        )
        stack = Stack(
            args.home,
            args.port,
            os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"),
            overrides,
            args.label_studio_port if args.label_studio else None,
            args.executor,
        )
        with_label_studio = (
            " and Label Studio (its first start takes a minute or two)" if args.label_studio else ""
        )
        print(f"starting the local AWS{with_label_studio} and Airflow in {stack.home} ...", flush=True)
        with stack:
            days = seeded_days(datetime.now(UTC).date())
            dags = ", ".join(stack.dag_ids)
            if args.backfill:
                api = AirflowApi(stack.api_url)
                for dag_id in stack.dag_ids:
                    api.backfill(dag_id, days[0], days[-1])
                    api.unpause(dag_id)
                backfilled = f"a backfill of {days[0]} .. {days[-1]} is running ({dags})"
            else:
                backfilled = f"{dags} paused; seeded days {days[0]} .. {days[-1]}"
            reviewing = (
                f"Label Studio: {stack.label_studio.url}  (login {ADMIN_EMAIL} / {ADMIN_PASSWORD}): "
                "the days' images wait for your boxes there\n"
                if stack.label_studio
                else ""
            )
            celery = (
                f"CeleryExecutor: workers {', '.join(CELERY_WORKERS)}; PostgreSQL on 127.0.0.1:"
                f"{stack.ports['postgres']}, Redis on 127.0.0.1:{stack.ports['redis']}\n"
                if stack.executor == "celery"
                else ""
            )
            print(
                f"\nAirflow UI: {stack.api_url}  (login {USERNAME} / {PASSWORD})\n"
                f"{reviewing}{celery}local AWS:  {stack.aws_url}\n{backfilled}\n"
                f"logs in {stack.home}; stop with `make airflow-stop` or Ctrl-C\n",
                flush=True,
            )
            while not stopped.wait(1.0):
                for name, process in stack.processes.items():
                    if process.poll() is not None:
                        sys.exit(f"{name} exited ({process.returncode}); see {stack.log(name)}")
            print("stopping ...", flush=True)
    print("stopped: no process left", flush=True)


def stop(args: argparse.Namespace) -> None:
    """Stop a stack started by ``up`` in ``--home``, and whatever it started if it was killed."""
    state_file = args.home / "stack.json"
    if not state_file.exists():
        print("no local Airflow is running")
        return
    state = json.loads(state_file.read_text())
    with contextlib.suppress(psutil.NoSuchProcess):
        supervisor = psutil.Process(state["supervisor"])
        supervisor.terminate()
        # gone, or a zombie its parent has yet to reap (e.g. a test that started it)
        wait_until(
            lambda: not supervisor.is_running() or supervisor.status() == psutil.STATUS_ZOMBIE,
            60,
            "the stack's supervisor to stop",
        )
    for name, pid in reversed(state["pids"].items()):  # left behind when the supervisor was killed
        if name == "postgres":
            stop_postgres(pid)
        stop_process_tree(pid)
    if state.get("data_folder"):
        shutil.rmtree(state["data_folder"], ignore_errors=True)
    state_file.unlink(missing_ok=True)
    print("local Airflow stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("up", help="start and keep running until stopped")
    start.add_argument("--port", type=int, default=8080, help="the UI's port (0: a free one)")
    start.add_argument(
        "--no-backfill",
        dest="backfill",
        action="store_false",
        help="leave the DAG paused instead of backfilling the seeded days",
    )
    start.add_argument(
        "--dags-folder", type=Path, help="DAGs to load instead of dags/ (e.g. it and your own)"
    )
    start.add_argument(
        "--label-studio",
        action="store_true",
        help="review in a local Label Studio (you, in the browser) instead of the local AWS's A2I reviewers",
    )
    start.add_argument(
        "--label-studio-port", type=int, default=LOCAL_PORT, help="Label Studio's port (0: a free one)"
    )
    start.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local: LocalExecutor on SQLite; celery: CeleryExecutor, two workers, PostgreSQL and Redis "
        "(Debian's postgresql and redis-server)",
    )
    halt = commands.add_parser("stop", help="stop the stack started in --home")
    for command in (start, halt):
        command.add_argument("--home", type=Path, default=ROOT / "airflow-stack")
    args = parser.parse_args(argv)
    {"up": up, "stop": stop}[args.command](args)


if __name__ == "__main__":
    main()
