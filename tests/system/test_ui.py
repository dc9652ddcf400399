"""The Airflow UI of the backfilled DAG in headless Chromium (Debian's ``chromium`` and ``chromium-driver``).

Logged in with the stack's SimpleAuthManager user (conftest's ``browser``), opens the
``active_learning`` grid, the trigger form and a task's details, and saves a screenshot of each in
the test's output folder.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.system.helpers import RunningStack, task_instances
from tools.stack import DAG_ID


def green(color: str) -> bool:
    """A CSS colour (Chakra writes ``oklch(L C H)``) that a person calls green: hue 120-165."""
    match = re.fullmatch(r"oklch\(([\d.]+) ([\d.]+) ([\d.]+)\)", color)
    if match:
        _, chroma, hue = map(float, match.groups())
        return chroma > 0.08 and 120 <= hue <= 165
    red, green_, blue = map(int, re.findall(r"\d+", color)[:3])
    return green_ > 100 and green_ > red + 40 and green_ > blue + 40


def background(driver: WebDriver, element: Any) -> str:
    return driver.execute_script("return getComputedStyle(arguments[0]).backgroundColor", element)


def test_the_grid_shows_the_backfilled_runs_green(
    browser: WebDriver, stack: RunningStack, backfill: dict[str, Any], tmp_path: Path
) -> None:
    browser.get(f"{stack.api.url}/dags/{DAG_ID}")
    for run in backfill["runs"]:
        run_id = run["dag_run_id"]
        bar = browser.find_element(By.CSS_SELECTOR, f"a[href='/dags/{DAG_ID}/runs/{run_id}/'] > *")
        assert green(background(browser, bar)), (run_id, background(browser, bar))
        for task_id, ti in task_instances(stack.api, DAG_ID, run_id).items():
            cell = browser.find_element(By.ID, f"grid-{run_id}-{task_id}")
            badge = cell.find_element(By.CSS_SELECTOR, "[data-testid=task-state-badge]")
            assert green(background(browser, badge)) == (ti["state"] == "success"), (run_id, task_id)
    browser.save_screenshot(str(tmp_path / "grid.png"))
    print(f"\nscreenshots in {tmp_path}")


def test_the_trigger_form_shows_the_params_with_their_descriptions(
    browser: WebDriver, stack: RunningStack, backfill: dict[str, Any], tmp_path: Path
) -> None:
    browser.get(f"{stack.api.url}/dags/{DAG_ID}")
    browser.find_element(By.CSS_SELECTOR, "[data-testid=trigger-dag-button]").click()
    browser.find_element(By.XPATH, "//*[normalize-space()='Run Parameters']")
    time.sleep(1)  # the form's fields render after its heading
    form = browser.find_element(By.TAG_NAME, "body").text
    params = stack.api("GET", f"/dags/{DAG_ID}/details")["params"]
    assert {"bucket", "threshold", "min_new_labels", "require_approval"} <= set(params)
    for name, param in params.items():
        assert name in form
        # the description as the form shows it: the first line of it, as text
        assert param["description"].split("\n")[0][:60] in form, name
    browser.save_screenshot(str(tmp_path / "trigger-form.png"))


def test_a_task_shows_its_console_link(
    browser: WebDriver, stack: RunningStack, backfill: dict[str, Any], tmp_path: Path
) -> None:
    # a run whose update ran (the others skip it when an earlier day trained on their labels too)
    (run_id, *_) = [
        run["dag_run_id"]
        for run in backfill["runs"]
        if task_instances(stack.api, DAG_ID, run["dag_run_id"])["update_endpoint"]["state"] == "success"
    ]
    browser.get(f"{stack.api.url}/dags/{DAG_ID}/runs/{quote(run_id)}/tasks/update_endpoint/details")
    link = browser.find_element(By.XPATH, "//*[normalize-space()='Extra Links']/following::a[1]")
    assert link.text == "SageMaker endpoint"
    assert link.get_attribute("href") == (
        "https://console.aws.amazon.com/sagemaker/home?region=us-east-1#/endpoints/active-learning-od"
    )
    browser.save_screenshot(str(tmp_path / "task-extra-links.png"))
