"""The README's settings table and LoopSettings' fields are one list: neither can drift."""

from __future__ import annotations

import re
from dataclasses import MISSING, Field, fields
from pathlib import Path

from active_learning.settings import LoopSettings

README = Path(__file__).parents[1] / "README.md"
ROW = re.compile(r"^\| `(?P<name>[a-z0-9_]+)` \| (?P<default>[^|]*) \| (?P<meaning>[^|]+) \|$")


def settings_table() -> list[tuple[str, str, str]]:
    """(name, default, meaning) of each row of the table in the README's "## Settings" section."""
    section = README.read_text(encoding="utf-8").split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    matches = [ROW.match(line) for line in rows]
    assert all(matches), [row for row, match in zip(rows, matches, strict=True) if not match]
    return [(m["name"], m["default"].strip(), m["meaning"].strip()) for m in matches if m]


def readme_default(setting: Field) -> str:
    """How the table writes a field's default."""
    value = setting.default
    if value is MISSING:
        return "(required)"
    if value is None or value == ():
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple):
        return f"`{','.join(value)}`"  # as AL_<NAME> takes a list
    return f"`{value}`"


def test_the_settings_table_lists_every_field_in_order() -> None:
    assert [name for name, _, _ in settings_table()] == [f.name for f in fields(LoopSettings)]


def test_the_settings_table_gives_each_fields_default() -> None:
    table = {name: default for name, default, _ in settings_table()}
    assert table == {f.name: readme_default(f) for f in fields(LoopSettings)}


def test_every_setting_is_explained() -> None:
    assert all(meaning for _, _, meaning in settings_table())
