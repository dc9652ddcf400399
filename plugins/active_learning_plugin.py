"""The active-learning Airflow plugin: the Learning page, a "Learning" tab on every DAG.

Airflow's plugin manager imports this file from the plugins folder (``plugins/.airflowignore`` keeps
it away from the ``active_learning`` package, which is imported as a package, not as plugins). Every
Airflow process may load plugins (the dag-processor, the scheduler, each task), so this module
imports nothing but ``AirflowPlugin``: the page's FastAPI app is built on the api-server's first
request to it (:class:`LazyApp`), from :mod:`active_learning.learning_page.app`.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from airflow.plugins_manager import AirflowPlugin

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

APP_FACTORY = "active_learning.learning_page.app:learning_page_app"
# where the app is mounted in the api-server, and the tab's iframe source: relative, as the UI
# resolves it against its own base URL (an api-server served under a path works too)
URL_PREFIX = "/active-learning"
PAGE_HREF = "active-learning/dags/{DAG_ID}"


class LazyApp:
    """An ASGI app that imports and builds the real one (``module:factory``) when first called.

    :param factory: ``"module:function"`` returning an ASGI app.
    """

    def __init__(self, factory: str) -> None:
        self.factory = factory
        self._app: ASGIApp | None = None
        self._lock = threading.Lock()

    def build(self) -> ASGIApp:
        """The real app, built once (the api-server may serve its first requests concurrently)."""
        with self._lock:
            if self._app is None:
                module, _, function = self.factory.partition(":")
                self._app = getattr(importlib.import_module(module), function)()
        return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await (self._app or self.build())(scope, receive, send)


class ActiveLearningPlugin(AirflowPlugin):
    """The Learning page (a FastAPI app in the api-server) and its tab on each DAG's page."""

    name = "active_learning"
    fastapi_apps = [
        {"app": LazyApp(APP_FACTORY), "url_prefix": URL_PREFIX, "name": "Active learning: Learning page"}
    ]
    external_views = [
        {
            "name": "Learning",
            "href": PAGE_HREF,
            "destination": "dag",
            "url_route": "learning",
        }
    ]
