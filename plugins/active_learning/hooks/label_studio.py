"""Hook for Label Studio's REST API (1.23): projects, tasks with pre-annotations, annotations.

On the HTTP provider's ``HttpHook`` rather than ``label-studio-sdk``: the SDK's dependency tree
(numpy < 2.3, opencv, nltk, black) clashes with Airflow's. The connection is an ``http`` connection:
``host`` the server's URL, ``password`` a personal access token (Account & Settings -> Personal
Access Token). A personal access token is a JWT refresh token: it is exchanged at
``/api/token/refresh/`` for a short-lived access token sent as ``Authorization: Bearer``. A legacy
token (not a JWT; disabled by default for organizations created by 1.23) is sent as ``Token``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from xml.sax.saxutils import quoteattr

from airflow.providers.http.hooks.http import HttpHook

from active_learning.reviews import ReviewProgress, label_studio_status

PAGE_SIZE = 100  # tasks per listing call: N tasks cost ceil(N / 100) calls
DEFAULT_CONN_ID = "label_studio_default"


def labeling_config(class_names: Sequence[str], instructions: str) -> str:
    """The labeling interface: the instructions, the image, the class list as ``RectangleLabels``,
    axis-aligned boxes only (the manifest has no rotation)."""
    labels = "".join(f"<Label value={quoteattr(name)}/>" for name in class_names)
    return (
        "<View>"
        f"<Header value={quoteattr(instructions)}/>"
        '<Image name="image" value="$image" zoom="true"/>'
        f'<RectangleLabels name="label" toName="image" canRotate="false">{labels}</RectangleLabels>'
        "</View>"
    )


def rectangle_result(box: Mapping[str, Any], width: int, height: int) -> dict[str, Any]:
    """One pixel box ``{label, left, top, width, height}`` as a Label Studio result (percent of the image)."""
    return {
        "from_name": "label",
        "to_name": "image",
        "type": "rectanglelabels",
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": {
            "x": 100 * box["left"] / width,
            "y": 100 * box["top"] / height,
            "width": 100 * box["width"] / width,
            "height": 100 * box["height"] / height,
            "rotation": 0,
            "rectanglelabels": [box["label"]],
        },
    }


def day_query(day: str) -> str:
    """The data manager filter of one run day's tasks (``data.day``), for ``GET /api/tasks``."""
    item = {"filter": "filter:tasks:data.day", "operator": "equal", "type": "String", "value": day}
    return json.dumps({"filters": {"conjunction": "and", "items": [item]}})


class LabelStudioHook(HttpHook):
    """Talk to a Label Studio server with a personal access token (or a legacy token).

    :param label_studio_conn_id: an ``http`` connection: host = URL, password = token.
    """

    conn_name_attr = "label_studio_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    hook_name = "Label Studio"

    def __init__(self, label_studio_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(http_conn_id=label_studio_conn_id, **kwargs)
        self.label_studio_conn_id = label_studio_conn_id
        self.calls = 0  # requests sent, the token exchange included (for logs and tests)
        self._authorization: str | None = None
        self._session: Any = None

    def session(self) -> Any:
        """One ``requests`` session per hook, from the connection (its extras: proxies, verify, ...).
        The token is sent in our own header, not as the basic auth ``HttpHook`` makes of a password."""
        if self._session is None:
            self._session = self.get_conn()
            self._session.auth = None
        return self._session

    def _token(self) -> str:
        connection = self.get_connection(self.label_studio_conn_id)
        token = connection.password or (connection.extra_dejson or {}).get("token")
        if not token:
            raise ValueError(f"connection {self.label_studio_conn_id!r} has no token (its password)")
        return token

    def authorization(self) -> str:
        """The ``Authorization`` header; a personal access token is exchanged once per hook."""
        if self._authorization is None:
            token = self._token()
            if token.count(".") == 2:  # a JWT: a personal access token
                access = self._send("POST", "/api/token/refresh/", authorize=False, json={"refresh": token})
                self._authorization = f"Bearer {access['access']}"
            else:
                self._authorization = f"Token {token}"
        return self._authorization

    def _send(self, method: str, path: str, *, authorize: bool = True, **kwargs: Any) -> Any:
        session = self.session()
        headers = {"Authorization": self.authorization()} if authorize else {}
        self.calls += 1
        url = self.base_url.rstrip("/") + path
        response = session.request(method, url, headers=headers, timeout=60, **kwargs)
        if response.status_code == 401 and authorize and self._authorization_expires():
            self._authorization = None  # the access token expired: exchange the token again, once
            self.calls += 1
            headers = {"Authorization": self.authorization()}
            response = session.request(method, url, headers=headers, timeout=60, **kwargs)
        if response.status_code >= 400:
            raise LabelStudioError(f"{method} {path}: HTTP {response.status_code}: {response.text[:500]}")
        return response.json() if response.content else None

    def _authorization_expires(self) -> bool:
        return bool(self._authorization and self._authorization.startswith("Bearer "))

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One API call; an HTTP error raises :class:`LabelStudioError` with the server's message."""
        return self._send(method, path, **kwargs)

    # projects --------------------------------------------------------------------------------
    def find_project(self, title: str) -> dict[str, Any] | None:
        page = self.request("GET", "/api/projects/", params={"title": title, "page_size": PAGE_SIZE})
        matches = [project for project in page.get("results", []) if project["title"] == title]
        return min(matches, key=lambda project: project["id"]) if matches else None

    def ensure_project(
        self, title: str, class_names: Sequence[str], description: str, maximum_annotations: int
    ) -> dict[str, Any]:
        """The project titled ``title``, created when absent (the title carries the settings hash,
        so a retry finds it and a changed class list or setting makes a new one)."""
        existing = self.find_project(title)
        if existing is not None:
            return existing
        self.log.info("Creating Label Studio project %s", title)
        created = self.request(
            "POST",
            "/api/projects/",
            json={
                "title": title,
                "description": description,
                "label_config": labeling_config(class_names, description),
                "expert_instruction": description,
                "show_instruction": True,
                "maximum_annotations": maximum_annotations,
                "show_collab_predictions": True,  # the model's boxes are pre-drawn
                "show_skip_button": True,
            },
        )
        # two tries racing may both have created one: the lowest id wins, the other is left empty
        return self.find_project(title) or created

    def set_model_version(self, project_id: int, model_version: str) -> None:
        """Pre-draw the predictions of ``model_version`` on the labeling page."""
        self.request("PATCH", f"/api/projects/{project_id}/", json={"model_version": model_version})

    # tasks -----------------------------------------------------------------------------------
    def day_tasks(self, project_id: int, day: str, fields: str = "all") -> Iterator[dict[str, Any]]:
        """Every task of a run day, 100 per call (``ceil(N / 100)`` calls, one when there is none)."""
        page = 1
        while True:
            response = self.request(
                "GET",
                "/api/tasks/",
                params={
                    "project": project_id,
                    "page": page,
                    "page_size": PAGE_SIZE,
                    "query": day_query(day),
                    "fields": fields,
                },
            )
            tasks = response.get("tasks", [])
            yield from tasks
            if len(tasks) < PAGE_SIZE or page >= math.ceil(response.get("total", 0) / PAGE_SIZE):
                return
            page += 1

    def day_progress(
        self, project_id: int, day: str, names: frozenset[str], required_answers: int
    ) -> ReviewProgress:
        """One check of the run's tasks (``names``): the day's tasks, 100 per call (``ceil(N / 100)``
        calls), counted in the review words."""
        statuses = (
            (task["data"].get("name", ""), *label_studio_status(task, required_answers))
            for task in self.day_tasks(project_id, day, fields="task_only")
        )
        return ReviewProgress.from_statuses(statuses, names)

    def stop_open_tasks(self, project_id: int, day: str, names: frozenset[str], required_answers: int) -> int:
        """Take the run's tasks still open out of the labeling stream (one more listing, a call per task)."""
        open_tasks = [
            task["id"]
            for task in self.day_tasks(project_id, day, fields="task_only")
            if task["data"].get("name") in names
            and label_studio_status(task, required_answers)[0] == "InProgress"
        ]
        for task_id in open_tasks:
            self.stop_task(task_id, "review timeout")
        return len(open_tasks)

    def import_tasks(self, project_id: int, tasks: Sequence[Mapping[str, Any]]) -> int:
        """Import tasks with their predictions, 100 per call; returns the number imported."""
        imported = 0
        for start in range(0, len(tasks), PAGE_SIZE):
            batch = list(tasks[start : start + PAGE_SIZE])
            response = self.request("POST", f"/api/projects/{project_id}/import", json=batch)
            imported += int(response.get("task_count", len(batch)))
        return imported

    def add_predictions(self, project_id: int, predictions: Sequence[Mapping[str, Any]]) -> None:
        """Add predictions (each naming its ``task``) to existing tasks, 100 per call."""
        for start in range(0, len(predictions), PAGE_SIZE):
            batch = list(predictions[start : start + PAGE_SIZE])
            response = self.request("POST", f"/api/projects/{project_id}/import/predictions", json=batch)
            if int(response.get("created", -1)) != len(batch):
                raise LabelStudioError(
                    f"project {project_id}: {len(batch)} predictions sent, {response} created"
                )

    def stop_task(self, task_id: int, reason: str) -> None:
        """Take a task out of the labeling stream (``is_labeled``) and mark why (``meta.stopped``)."""
        self.request("PATCH", f"/api/tasks/{task_id}", json={"is_labeled": True, "meta": {"stopped": reason}})

    def annotate(self, task_id: int, results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Submit an annotation as the token's user (what a reviewer's Submit does)."""
        return self.request("POST", f"/api/tasks/{task_id}/annotations/", json={"result": list(results)})


class LabelStudioError(RuntimeError):
    """Label Studio answered with an HTTP error."""
