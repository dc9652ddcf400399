"""docs/settings.md is made from the settings' fields: it can never drift from them."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from active_learning.settings import DagSettings, LoopSettings, environment_variable
from tools import settings_doc


def test_the_settings_page_is_the_generated_one() -> None:
    """Issue 16.5: the README's table repeated every default and description by hand, and drifted."""
    assert settings_doc.PAGE.read_text() == settings_doc.page(), "run `make docs`"
    assert settings_doc.main(["--check"]) == 0


def test_every_setting_and_knob_has_its_row() -> None:
    page = settings_doc.page()
    for setting in fields(LoopSettings):
        assert f"| `{setting.name}` | " in page
    for knob in fields(DagSettings):
        assert f"| `{environment_variable(knob.name)}` | " in page


def test_a_stale_page_fails_the_check(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    stale = tmp_path / "settings.md"
    stale.write_text(settings_doc.page().replace("`box-uncertainty`", "`least-confidence`", 1))
    monkeypatch.setattr(settings_doc, "PAGE", stale)
    assert settings_doc.main(["--check"]) == 1
