"""The Learning page of the backfilled loop, in the stack's UI (headless Chromium).

Opens the DAG's "Learning" tab after the backfill and checks that its charts and its table say
what each run's ``day_summary`` XCom says (read through the REST API), one row per day linking its
run; a run link navigates the UI itself. Saves a screenshot of the tab and of the whole page in the
test's output folder.
"""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path
from typing import Any
from urllib.parse import quote

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.system.helpers import RunningStack, runs
from tools.stack import DAG_ID

# each chart's series and where the day record holds its number
SERIES = {
    ("map", "new"): ("validation_map", "new"),
    ("map", "serving"): ("validation_map", "serving"),
    ("counts", "routed"): ("routed",),
    ("counts", "labels"): ("labels", "converted"),
    ("cost_per_label", "cost_per_label"): ("cost", "per_label"),
}


def day_summary(stack: RunningStack, run_id: str) -> dict[str, Any] | None:
    """The run's ``day_summary`` return value, as the REST API gives it; ``None`` when it skipped."""
    try:
        run = quote(run_id, safe="")
        entry = stack.api(
            "GET", f"/dags/{DAG_ID}/dagRuns/{run}/taskInstances/day_summary/xcomEntries/return_value"
        )
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return None
        raise
    value = entry["value"]
    return json.loads(value) if isinstance(value, str) else value


def number(record: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        record = record[key]
    return record


def chart(browser: WebDriver, name: str, series: str) -> dict[str, float]:
    points = browser.find_elements(By.CSS_SELECTOR, f"svg[data-chart='{name}'] [data-series='{series}']")
    return {point.get_attribute("data-day"): float(point.get_attribute("data-value")) for point in points}


def open_tab(browser: WebDriver, stack: RunningStack) -> Any:
    """The DAG's page, its Learning tab clicked; the tab's iframe."""
    browser.get(f"{stack.api.url}/dags/{DAG_ID}")
    browser.find_element(By.XPATH, "//a[normalize-space()='Learning']").click()
    WebDriverWait(browser, 30).until(lambda d: d.current_url.endswith(f"/dags/{DAG_ID}/plugin/learning"))
    return browser.find_element(By.CSS_SELECTOR, "iframe[title='Learning']")


def test_the_learning_tab_shows_each_days_record(
    browser: WebDriver, stack: RunningStack, backfill: dict[str, Any], tmp_path: Path
) -> None:
    # every run's record (another test may run a backfilled day again: a rerun that changes nothing
    # writes none); a day shows the record written last
    records = {run["dag_run_id"]: day_summary(stack, run["dag_run_id"]) for run in runs(stack, DAG_ID)}
    by_day: dict[str, tuple[str, dict[str, Any]]] = {}
    for run_id, record in sorted(
        ((run_id, record) for run_id, record in records.items() if record),
        key=lambda item: item[1]["written_at"],
    ):
        by_day[record["day"]] = (run_id, record)
    assert sorted(by_day) == [day.isoformat() for day in backfill["days"]]

    frame = open_tab(browser, stack)
    assert frame.get_attribute("src") == f"{stack.api.url}/active-learning/dags/{DAG_ID}"
    browser.switch_to.frame(frame)
    browser.find_element(By.ID, "days")

    # the table: one row per day, in order, each linking its run, with the record's numbers
    rows = browser.find_elements(By.CSS_SELECTOR, "#days tbody tr")
    assert [row.get_attribute("data-day") for row in rows] == sorted(by_day)
    for row in rows:
        run_id, record = by_day[row.get_attribute("data-day")]
        assert row.get_attribute("data-run-id") == run_id
        link = row.find_element(By.CSS_SELECTOR, "a.run")
        assert link.get_attribute("href") == f"{stack.api.url}/dags/{DAG_ID}/runs/{run_id}"
        cells = {
            cell.get_attribute("data-field"): cell.get_attribute("data-value")
            for cell in row.find_elements(By.CSS_SELECTOR, "td[data-value]")
        }
        for field, path in {
            "images": ("images",),
            "routed": ("routed",),
            "reviewed": ("reviews", "completed"),
            "labels": ("labels", "converted"),
            "cost": ("cost", "total"),
        }.items():
            expected = number(record, path)
            assert (float(cells[field]) if field in cells else None) == expected, (run_id, field)
        gate = row.find_element(By.CSS_SELECTOR, "td[data-field='gate']").text
        assert gate == record["gate"]["decision"]
        assert ("empty" in (row.get_attribute("class") or "")) == record["empty_day"]

    # the charts: a point (or bar) per day whose record knows the number, with that number
    for (name, series), path in SERIES.items():
        numbers = {day: number(record, path) for day, (_, record) in by_day.items()}
        expected = {day: value for day, value in numbers.items() if value is not None}
        assert chart(browser, name, series) == expected, (name, series)
    outstanding = {
        day: max(r["reviews"]["started"] - r["reviews"]["completed"] - r["reviews"]["failed_or_stopped"], 0)
        for day, (_, r) in by_day.items()
        if r["reviews"]["started"] is not None
    }
    assert chart(browser, "outstanding", "outstanding") == outstanding

    # the warnings: starving as the latest day's record says; no wait is late after the backfill
    latest = by_day[max(by_day)][1]
    assert bool(browser.find_elements(By.ID, "starving")) == latest["starving"]
    assert browser.find_element(By.ID, "late-reviews").get_attribute("data-count") == "0"

    browser.switch_to.default_content()
    browser.save_screenshot(str(tmp_path / "learning-tab.png"))

    # the page alone, whole
    browser.get(f"{stack.api.url}/active-learning/dags/{DAG_ID}")
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, height + 120)
    browser.save_screenshot(str(tmp_path / "learning-page.png"))
    browser.set_window_size(1600, 1000)
    print(f"\nLearning page screenshots in {tmp_path}")


def test_a_run_link_on_the_learning_tab_opens_the_run_in_the_ui(
    browser: WebDriver, stack: RunningStack, backfill: dict[str, Any]
) -> None:
    browser.switch_to.frame(open_tab(browser, stack))
    link = browser.find_elements(By.CSS_SELECTOR, "#days a.run")[-1]
    run_id = link.text
    link.click()
    browser.switch_to.default_content()
    # the UI itself went to the run (not a second UI inside the frame)
    run_page = f"{stack.api.url}/dags/{DAG_ID}/runs/{run_id}"
    WebDriverWait(browser, 30).until(lambda d: d.current_url == run_page)
    browser.find_element(By.XPATH, f"//*[normalize-space()='{run_id}']")
