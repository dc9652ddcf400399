"""A person's review in Label Studio, in headless Chromium: the model's boxes are pre-drawn, the
reviewer moves one and submits, and the day's manifest holds the corrected box.

Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them), driven by Selenium.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from active_learning.hooks.label_studio import LabelStudioHook
from tests.integration.reviews import LS_CONN, ReviewStep, connect, put_day, read_lines, settings
from tests.support import chromium
from tools.label_studio import ADMIN_EMAIL, ADMIN_PASSWORD, LabelStudioServer
from world.scenes import DEMO_CLASSES

DAY = "2026-03-20"


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    chromium_path, chromedriver = chromium()
    options = Options()
    options.binary_location = chromium_path
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    # loopback only: Label Studio's page asks for its error reporter's script on the internet
    options.add_argument("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def box_pixels(result: dict[str, Any]) -> dict[str, Any]:
    """A prediction's rectangle in image pixels, as drawn."""
    value, width, height = result["value"], result["original_width"], result["original_height"]
    return {
        "label": value["rectanglelabels"][0],
        "left": value["x"] * width / 100,
        "top": value["y"] * height / 100,
        "width": value["width"] * width / 100,
        "height": value["height"] * height / 100,
    }


def inside(x: float, y: float, box: dict[str, Any]) -> bool:
    return box["left"] <= x <= box["left"] + box["width"] and box["top"] <= y <= box["top"] + box["height"]


def free_box(boxes: list[dict[str, Any]]) -> dict[str, Any]:
    """A box whose centre lies in no other box: a drag there grabs that box."""
    for box in boxes:
        centre = (box["left"] + box["width"] / 2, box["top"] + box["height"] / 2)
        if not any(inside(*centre, other) for other in boxes if other is not box):
            return box
    raise AssertionError(f"every box's centre lies in another box: {boxes}")


def wait_for_image(driver: WebDriver, natural_width: int) -> dict[str, float]:
    """The displayed image's rectangle, once Label Studio has loaded it (from the presigned URL)."""
    script = (
        "return Array.from(document.images)"
        f".filter(i => i.complete && i.naturalWidth === {natural_width})"
        ".filter(i => i.getBoundingClientRect().width > 200)"
        ".map(i => i.getBoundingClientRect().toJSON())[0] || null"
    )
    return WebDriverWait(driver, 60).until(lambda d: d.execute_script(script))


def test_a_reviewer_moves_a_pre_drawn_box_and_the_manifest_holds_it(
    emulator,
    aws: Callable[[str], Any],
    label_studio: LabelStudioServer,
    monkeypatch: pytest.MonkeyPatch,
    browser: WebDriver,
    tmp_path: Path,
) -> None:
    connect(monkeypatch, emulator, label_studio)
    (record,) = put_day(aws, DAY, 1, seed=11)
    step = ReviewStep(settings("label_studio"), DAY)
    started = step.start(step.set_up())
    project_id = started["label_studio_project_id"]
    (task,) = LabelStudioHook(LS_CONN).day_tasks(project_id, DAY)
    boxes = [box_pixels(result) for result in task["predictions"][0]["result"]]
    chosen = free_box(boxes)
    width, height = record["width"], record["height"]
    shift_x = 8 if chosen["left"] + chosen["width"] + 8 <= width else -8
    shift_y = 6 if chosen["top"] + chosen["height"] + 6 <= height else -6

    # log in as a reviewer does, then open the task
    browser.get(f"{label_studio.url}/user/login/")
    browser.find_element(By.NAME, "email").send_keys(ADMIN_EMAIL)
    browser.find_element(By.NAME, "password").send_keys(ADMIN_PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, 30).until(lambda d: "/user/login" not in d.current_url)
    browser.get(f"{label_studio.url}/projects/{project_id}/data?task={task['id']}")
    image = wait_for_image(browser, width)
    # the model's boxes are pre-drawn: one region per predicted box, with its label
    regions = WebDriverWait(browser, 30).until(
        lambda d: (
            [e.text for e in d.find_elements(By.CSS_SELECTOR, ".lsf-tree__node_type_rectangleregion")] or None
        )
    )
    assert len(regions) == len(boxes), regions
    for box in boxes:
        assert any(box["label"] in text for text in regions), (box, regions)
    time.sleep(1)  # let the canvas settle before dragging
    browser.save_screenshot(str(tmp_path / "before.png"))

    # drag the chosen box by (shift_x, shift_y) image pixels
    scale = image["width"] / width
    canvas = browser.find_element(By.CSS_SELECTOR, "canvas")
    origin = canvas.rect
    centre_x = (
        image["x"] + (chosen["left"] + chosen["width"] / 2) * scale - (origin["x"] + origin["width"] / 2)
    )
    centre_y = (
        image["y"] + (chosen["top"] + chosen["height"] / 2) * scale - (origin["y"] + origin["height"] / 2)
    )
    drag = ActionChains(browser).move_to_element_with_offset(canvas, round(centre_x), round(centre_y))
    drag.click_and_hold()
    for _ in range(4):
        drag.move_by_offset(round(shift_x * scale / 4), round(shift_y * scale / 4))
    drag.release().perform()
    time.sleep(0.5)
    browser.save_screenshot(str(tmp_path / "moved.png"))
    browser.find_element(By.CSS_SELECTOR, "button[aria-label='Submit current annotation']").click()

    hook = LabelStudioHook(LS_CONN)
    WebDriverWait(browser, 30).until(
        lambda _: next(iter(hook.day_tasks(project_id, DAY, fields="task_only")))["total_annotations"] == 1
    )
    browser.save_screenshot(str(tmp_path / "submitted.png"))
    assert step.wait(started)["completed"] == 1
    assert step.manifest()["converted"] == 1
    (line,) = read_lines(aws, DAY, "augmented.manifest")
    annotations = line["a2i-retraining"]["annotations"]
    assert len(annotations) == len(boxes)  # the other pre-drawn boxes were accepted as they were
    moved = [a for a in annotations if a["class_id"] == DEMO_CLASSES.index(chosen["label"])]
    expected_left, expected_top = chosen["left"] + shift_x, chosen["top"] + shift_y
    assert any(
        abs(a["left"] - expected_left) <= 1.5
        and abs(a["top"] - expected_top) <= 1.5
        and abs(a["width"] - chosen["width"]) <= 1.5
        for a in moved
    ), (chosen, shift_x, shift_y, annotations)
