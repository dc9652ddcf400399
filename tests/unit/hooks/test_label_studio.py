from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from active_learning.hooks.label_studio import day_query, labeling_config, rectangle_result
from active_learning.settings import LoopSettings, SettingsError

REQUIRED = {
    "bucket": "my-bucket",
    "role_arn": "arn:aws:iam::123456789012:role/A2IRole",
    "workteam_arn": "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/reviewers",
}


def test_the_labeling_config_lists_the_classes_as_rectangle_labels_without_rotation() -> None:
    config = ET.fromstring(labeling_config(["cat", 'a "quoted" & <odd> name'], "Fix the <boxes> & submit"))
    assert config.find("Header").get("value") == "Fix the <boxes> & submit"  # type: ignore[union-attr]
    rectangles = config.find("RectangleLabels")
    assert rectangles is not None
    assert rectangles.get("canRotate") == "false"
    assert rectangles.get("toName") == config.find("Image").get("name")  # type: ignore[union-attr]
    assert [label.get("value") for label in rectangles] == ["cat", 'a "quoted" & <odd> name']


def test_a_pixel_box_becomes_percent_of_the_image() -> None:
    result = rectangle_result({"label": "dog", "left": 20, "top": 10, "width": 50, "height": 40}, 200, 100)
    assert result["value"] == {
        "x": 10.0,
        "y": 10.0,
        "width": 25.0,
        "height": 40.0,
        "rotation": 0,
        "rectanglelabels": ["dog"],
    }
    assert (result["original_width"], result["original_height"]) == (200, 100)


def test_the_day_filter_selects_the_tasks_data_day() -> None:
    (item,) = json.loads(day_query("2026-01-02"))["filters"]["items"]
    assert item == {
        "filter": "filter:tasks:data.day",
        "operator": "equal",
        "type": "String",
        "value": "2026-01-02",
    }


def test_review_backend_defaults_to_a2i_and_refuses_unknown_backends() -> None:
    assert LoopSettings.from_mapping(REQUIRED).review_backend == "a2i"
    assert (
        LoopSettings.from_mapping({**REQUIRED, "review_backend": "label_studio"}).review_backend
        == "label_studio"
    )
    with pytest.raises(SettingsError, match="review_backend"):
        LoopSettings.from_mapping({**REQUIRED, "review_backend": "mturk"})
