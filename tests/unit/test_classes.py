from __future__ import annotations

from pathlib import Path

import pytest

from active_learning.classes import VOC_CLASSES, ClassListError, class_map, load_class_names


def test_voc_classes_are_the_seeds_twenty_in_id_order() -> None:
    assert len(VOC_CLASSES) == 20
    assert VOC_CLASSES[0] == "aeroplane"
    assert VOC_CLASSES[1] == "bicycle"
    assert VOC_CLASSES[17] == "sofa"
    assert VOC_CLASSES[-1] == "tvmonitor"


def test_class_map_is_string_keyed() -> None:
    assert class_map(["cat", "dog"]) == {"0": "cat", "1": "dog"}


def test_load_text_file_skips_blanks_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "classes.txt"
    path.write_text("# my classes\ncat\n\n dog \n")
    assert load_class_names(path) == ("cat", "dog")


def test_load_json_list(tmp_path: Path) -> None:
    path = tmp_path / "classes.json"
    path.write_text('["cat", "dog"]')
    assert load_class_names(path) == ("cat", "dog")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("c.txt", "cat\ncat\n", "more than once"),
        ("c.txt", "\n# nothing\n", "non-empty list"),
        ("c.json", '{"0": "cat"}', "JSON list"),
        ("c.json", "[", "not valid JSON"),
        ("c.json", '["cat", ""]', "class 1"),
    ],
)
def test_bad_class_lists_are_rejected_with_the_reason(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ClassListError, match=message):
        load_class_names(path)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ClassListError, match="cannot read"):
        load_class_names(tmp_path / "absent.txt")
