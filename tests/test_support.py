"""The test helpers' own rules: browser tests skip visibly without a browser, never silently in CI."""

from __future__ import annotations

import pytest

from tests.support import REQUIRE_BROWSER, chromium


def test_browser_tests_skip_without_chromium_unless_ci_requires_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv(REQUIRE_BROWSER, raising=False)
    with pytest.raises(pytest.skip.Exception, match="needs Debian's chromium and chromium-driver"):
        chromium()
    monkeypatch.setenv(REQUIRE_BROWSER, "1")
    with pytest.raises(pytest.fail.Exception, match="may not be skipped"):
        chromium()
