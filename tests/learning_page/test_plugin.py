"""The plugin: what Airflow's plugin manager loads from the plugins folder, and that it is cheap."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

from active_learning_plugin import APP_FACTORY, PAGE_HREF, URL_PREFIX, ActiveLearningPlugin, LazyApp

from tools.airflow_runs import ROOT

CALLS: list[str] = []

# What a fresh process imports when Airflow loads the plugins folder: the plugin module only, none
# of the package (dag-processors, schedulers and every task load plugins; the page is for the
# api-server alone). The same environment as the stack's processes.
LOAD_PLUGINS = """
import json, sys
from airflow import plugins_manager
before = set(sys.modules)
plugins_manager.ensure_plugins_loaded()
new = sorted(set(sys.modules) - before)
print(json.dumps({
    "new": new,
    "fastapi": "fastapi" in sys.modules,
    "plugins": [p.name for p in plugins_manager._get_plugins()[0]],
    "errors": plugins_manager.get_import_errors(),
}))
"""


def test_loading_the_plugins_folder_imports_the_plugin_module_only(tmp_path: Any) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "AL_"))}
    env.update(
        AIRFLOW_HOME=str(tmp_path),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        PYTHONPATH=str(ROOT / "plugins"),
    )
    done = subprocess.run(
        [sys.executable, "-c", LOAD_PLUGINS], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded["errors"] == {}  # plugins/.airflowignore: the package's files are not plugins
    assert "active_learning" in loaded["plugins"]
    assert "active_learning_plugin" in loaded["new"]
    assert [name for name in loaded["new"] if name.split(".")[0] == "active_learning"] == []
    assert loaded["fastapi"] is False


def test_the_plugin_mounts_the_page_and_adds_a_tab_to_each_dag() -> None:
    (app,) = ActiveLearningPlugin.fastapi_apps
    assert app["url_prefix"] == URL_PREFIX == "/active-learning"
    assert isinstance(app["app"], LazyApp)
    assert app["app"].factory == APP_FACTORY
    (view,) = ActiveLearningPlugin.external_views
    # relative: the UI resolves it against its base URL; {DAG_ID} is the DAG whose tab it is
    assert view == {"name": "Learning", "href": PAGE_HREF, "destination": "dag", "url_route": "learning"}
    assert PAGE_HREF == "active-learning/dags/{DAG_ID}"


def fake_factory() -> Any:
    CALLS.append("built")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"path": scope["path"]})

    return app


def test_the_lazy_app_builds_the_real_one_once_on_first_use() -> None:
    CALLS.clear()
    lazy = LazyApp(f"{__name__}:fake_factory")
    assert CALLS == []
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {}

    async def two_requests() -> None:
        await asyncio.gather(lazy({"path": "/a"}, receive, send), lazy({"path": "/b"}, receive, send))

    asyncio.run(two_requests())
    assert CALLS == ["built"]
    assert sorted(message["path"] for message in sent) == ["/a", "/b"]
