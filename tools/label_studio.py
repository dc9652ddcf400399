"""A local Label Studio for demos and tests: started from its own venv, with an admin and a token.

Label Studio (``label-studio`` on PyPI) has its own pinned dependency tree, so ``make install``
puts it into ``.venv-label-studio/``, apart from Airflow's. This module starts it on 127.0.0.1
with SQLite in a data folder, creates the admin user, and gets a personal access token the way a
person does in the UI (log in, Account & Settings -> Personal Access Token), since 1.23 disables
legacy tokens for new organizations. It never imports the product.

    make airflow LABEL_STUDIO=1   (python -m tools.stack up --label-studio: a person reviews)
    make demo DEMO_ARGS="--review-backend label_studio"   (a scripted annotator, or you)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

from tools.airflow_runs import free_port

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BIN = REPO / ".venv-label-studio" / "bin" / "label-studio"
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "active-learning-local"  # a local, loopback-only server: not a secret
# Its port when started for a person: beside `make airflow`'s UI on 8080.
LOCAL_PORT = 8081
# The DAG's settings while a person reviews in the browser: days of time to answer.
PERSON_REVIEW_SETTINGS = {"AL_REVIEW_TIMEOUT_HOURS": "240", "AL_REVIEW_POLL_SECONDS": "10"}


class LabelStudioServer:
    """``label-studio start`` on 127.0.0.1, its admin and a personal access token; stopped on exit.

    :param data_dir: SQLite database, media and the saved token (kept: a restart finds its data).
    :param port: a free port by default.
    :param executable: the ``label-studio`` script (``LABEL_STUDIO_BIN`` or ``.venv-label-studio``).
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        executable: str | Path | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.executable = Path(executable or os.environ.get("LABEL_STUDIO_BIN") or DEFAULT_BIN)
        self.log_path = log_path or self.data_dir / "label-studio.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.token = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(
        self, timeout: float = 600, on_spawn: Callable[[subprocess.Popen[bytes]], None] | None = None
    ) -> LabelStudioServer:
        """Start it and wait until it answers; ``on_spawn`` gets the process as soon as it runs."""
        if not self.executable.exists():
            raise FileNotFoundError(
                f"{self.executable} not found: run `make install` (it installs Label Studio)"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir),
            "LATEST_VERSION_CHECK": "false",  # no network: never ask PyPI for a newer version
            "COLLECT_ANALYTICS": "false",
            # no network: Label Studio reports its errors to sentry.io (server and page) by default
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        }
        command = [
            str(self.executable),
            "start",
            "--no-browser",
            "--internal-host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--username",
            ADMIN_EMAIL,
            "--password",
            ADMIN_PASSWORD,
        ]
        log = self.log_path.open("ab")
        # its own process group: stopping it stops its workers too
        self.process = subprocess.Popen(
            command,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        if on_spawn is not None:
            on_spawn(self.process)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Label Studio exited with {self.process.returncode}; see {self.log_path}")
            try:
                if requests.get(f"{self.url}/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(1)
        else:
            self.stop()
            raise TimeoutError(
                f"Label Studio did not answer on {self.url} in {timeout:.0f} s; see {self.log_path}"
            )
        self.token = self.personal_access_token()
        return self

    def login(self, email: str = ADMIN_EMAIL, password: str = ADMIN_PASSWORD) -> requests.Session:
        """A browser-like session, logged in through the login form."""
        session = requests.Session()
        session.get(f"{self.url}/user/login/", timeout=30)
        response = session.post(
            f"{self.url}/user/login/",
            data={"email": email, "password": password, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
            headers={"Referer": f"{self.url}/user/login/"},
            allow_redirects=False,
            timeout=30,
        )
        if response.status_code != 302:
            raise RuntimeError(f"cannot log in to Label Studio as {email}: HTTP {response.status_code}")
        return session

    def personal_access_token(self) -> str:
        """The admin's personal access token: created once, then read from the data folder."""
        saved = self.data_dir / "personal-access-token"
        if saved.exists():
            return saved.read_text().strip()
        session = self.login()
        response = session.post(
            f"{self.url}/api/token/",
            headers={"X-CSRFToken": session.cookies["csrftoken"], "Referer": self.url},
            json={},
            timeout=30,
        )
        response.raise_for_status()
        token = response.json()["token"]
        saved.write_text(token)
        saved.chmod(0o600)
        return token

    def connection_uri(self) -> str:
        """The Airflow connection: an ``http`` connection, host = URL, password = the token."""
        return f"http://:{self.token}@127.0.0.1:{self.port}"

    def reviewing_settings(self) -> dict[str, str]:
        """The environment that makes a DAG review in this Label Studio (its default connection)."""
        return {
            "AL_REVIEW_BACKEND": "label_studio",
            "AIRFLOW_CONN_LABEL_STUDIO_DEFAULT": self.connection_uri(),
        }

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def leftovers(self) -> list[str]:
        """What a stopped server left behind: live processes of its group, a listening socket."""
        problems = []
        if self.process is not None:
            try:
                os.killpg(self.process.pid, 0)
                problems.append(f"process group {self.process.pid} still has processes")
            except ProcessLookupError:
                pass
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                problems.append(f"something still listens on 127.0.0.1:{self.port}")
        return problems

    def __enter__(self) -> LabelStudioServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class LabelStudioClient:
    """A minimal API client with a personal access token (the demo's and tests' scripted annotator)."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.session = requests.Session()
        access = self.session.post(f"{url}/api/token/refresh/", json={"refresh": token}, timeout=30)
        access.raise_for_status()
        self.session.headers["Authorization"] = f"Bearer {access.json()['access']}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.session.request(method, f"{self.url}{path}", timeout=60, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def tasks(self) -> list[dict[str, Any]]:
        """Every task of every project, with its data."""
        tasks = []
        for project in self.call("GET", "/api/projects/", params={"page_size": 1000})["results"]:
            page = 1
            while True:
                listing = self.call(
                    "GET", "/api/tasks/", params={"project": project["id"], "page": page, "page_size": 100}
                )
                tasks += listing["tasks"]
                if len(listing["tasks"]) < 100:
                    break
                page += 1
        return tasks

    def open_tasks(self) -> list[dict[str, Any]]:
        """Every task of every project nobody has labelled yet."""
        return [task for task in self.tasks() if not task["is_labeled"]]

    def answered(self, day: str) -> int:
        """The tasks of a run day (their ``data.day``) with a submitted annotation, whoever gave it."""
        return sum(
            task["data"].get("day") == day
            and int(task.get("total_annotations") or 0) > int(task.get("cancelled_annotations") or 0)
            for task in self.tasks()
        )


def percent_result(box: dict[str, Any], width: int, height: int) -> dict[str, Any]:
    """A pixel box ``{label, left, top, width, height}`` as a Label Studio rectangle result."""
    return {
        "from_name": "label",
        "to_name": "image",
        "type": "rectanglelabels",
        "original_width": width,
        "original_height": height,
        "value": {
            "x": 100 * box["left"] / width,
            "y": 100 * box["top"] / height,
            "width": 100 * box["width"] / width,
            "height": 100 * box["height"] / height,
            "rotation": 0,
            "rectanglelabels": [box["label"]],
        },
    }


class ScriptedAnnotator(threading.Thread):
    """Answers every open Label Studio task with the image's reference boxes (its S3 metadata).

    The scripted stand-in for a person, like the emulator's A2I reference reviewer: it reads
    ``data.source`` and ``data.width/height`` of each task (as the DAG imports them) and submits
    one annotation per task through the API.

    :param s3: a boto3 S3 client of the local AWS.
    :param metadata_key: the S3 metadata key holding the reference boxes (JSON).
    """

    def __init__(self, client: LabelStudioClient, s3: Any, metadata_key: str, interval: float = 0.5) -> None:
        super().__init__(daemon=True, name="label-studio-annotator")
        self.client, self.s3, self.metadata_key, self.interval = client, s3, metadata_key, interval
        self.stopped = threading.Event()

    def answer(self, task: dict[str, Any]) -> None:
        data = task["data"]
        bucket, _, key = data["source"].removeprefix("s3://").partition("/")
        metadata = self.s3.head_object(Bucket=bucket, Key=key).get("Metadata", {})
        boxes = json.loads(metadata.get(self.metadata_key, "[]"))
        results = [percent_result(box, data["width"], data["height"]) for box in boxes]
        self.client.call("POST", f"/api/tasks/{task['id']}/annotations/", json={"result": results})

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                for task in self.client.open_tasks():
                    if "source" in task["data"]:
                        self.answer(task)
            except requests.RequestException:
                continue  # the server is starting or stopping: try again

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=10)
