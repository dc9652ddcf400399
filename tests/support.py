"""Helpers shared by tests."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
# Set by .ci/run: there a missing browser fails the browser tests instead of skipping them.
REQUIRE_BROWSER = "REQUIRE_BROWSER_TESTS"


def load_fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``check`` until it holds; an AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def chromium() -> tuple[str, str]:
    """Debian's ``chromium`` and ``chromedriver`` (no browser download): the browser tests skip
    without them, with the reason in pytest's summary, or fail where ``REQUIRE_BROWSER_TESTS`` is set."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if browser and driver:
        return browser, driver
    reason = "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
    if os.environ.get(REQUIRE_BROWSER):
        pytest.fail(f"{reason}; {REQUIRE_BROWSER} is set, so the browser tests may not be skipped")
    pytest.skip(reason)
