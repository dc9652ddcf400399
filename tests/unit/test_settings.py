from __future__ import annotations

from datetime import date

import pytest

from active_learning.classes import VOC_CLASSES
from active_learning.settings import ConfinementError, LoopSettings, SettingsError, split_s3_uri

REQUIRED = {
    "bucket": "my-bucket",
    "role_arn": "arn:aws:iam::123456789012:role/service-role/A2IRole",
    "workteam_arn": "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/reviewers",
    "endpoint_name": "object-detection",
}


def test_defaults_follow_the_seed() -> None:
    settings = LoopSettings(**REQUIRED)
    assert settings.threshold == 0.5
    assert settings.class_names == VOC_CLASSES
    assert settings.label_attribute == "a2i-retraining"


def test_s3_layout() -> None:
    settings = LoopSettings(**REQUIRED, prefix="team/al")
    day = date(2026, 11, 26)
    assert settings.incoming_prefix(day) == "team/al/incoming/2026-11-26/"
    assert settings.run_key(day, "predictions.jsonl") == "team/al/runs/2026-11-26/predictions.jsonl"
    assert settings.a2i_output_uri == "s3://my-bucket/team/al/a2i-output/"
    assert settings.training_output_uri == "s3://my-bucket/team/al/training/"
    assert LoopSettings(**REQUIRED, prefix="").key("runs") == "runs"


def test_from_mapping_coerces_strings_and_ignores_empty_values() -> None:
    settings = LoopSettings.from_mapping(
        {
            **REQUIRED,
            "threshold": "0.4",
            "max_reviews": "",
            "task_count": "2",
            "class_names": "cat, dog",
            "validation_manifest_uri": None,
            "something_else": 1,
        }
    )
    assert settings.threshold == 0.4
    assert settings.max_reviews is None
    assert settings.task_count == 2
    assert settings.class_names == ("cat", "dog")
    assert settings.extra == {"something_else": 1}


def test_missing_required_settings_are_named() -> None:
    with pytest.raises(SettingsError, match="role_arn, workteam_arn"):
        LoopSettings.from_mapping({"bucket": "b-b-b", "endpoint_name": "e"})


@pytest.mark.parametrize(
    ("override", "name"),
    [
        ({"bucket": "My_Bucket"}, "bucket"),
        ({"role_arn": "not-an-arn"}, "role_arn"),
        ({"workteam_arn": "arn:aws:sagemaker:us-east-1:1:workteam/x"}, "workteam_arn"),
        ({"endpoint_name": "bad_name"}, "endpoint_name"),
        ({"prefix": "/abs"}, "prefix"),
        ({"resource_prefix": "Upper"}, "resource_prefix"),
        ({"threshold": 1.2}, "threshold"),
        ({"task_count": 4}, "task_count"),
        ({"task_time_limit_seconds": 10}, "task_time_limit_seconds"),
        ({"task_availability_seconds": 864_001}, "task_availability_seconds"),
        ({"validation_manifest_uri": "/local/file"}, "validation_manifest_uri"),
        ({"validation_fraction": 0}, "validation_fraction"),
        ({"keep_models": 1}, "keep_models"),
        ({"class_names": ("cat", "cat")}, "more than once"),
    ],
)
def test_invalid_settings_name_the_setting(override: dict, name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        LoopSettings(**{**REQUIRED, **override})


def test_from_mapping_rejects_non_numbers_naming_the_setting() -> None:
    with pytest.raises(SettingsError, match="task_count"):
        LoopSettings.from_mapping({**REQUIRED, "task_count": "two"})
    with pytest.raises(SettingsError, match="task_count"):
        LoopSettings.from_mapping({**REQUIRED, "task_count": 1.5})


def test_split_s3_uri() -> None:
    assert split_s3_uri("s3://b/k/x.jpg") == ("b", "k/x.jpg")
    with pytest.raises(ValueError, match="not an S3 object URI"):
        split_s3_uri("https://b/k")


def test_an_empty_prefix_from_params_means_the_bucket_root() -> None:
    settings = LoopSettings.from_mapping({**REQUIRED, "prefix": ""})
    assert settings.run_key(date(2026, 11, 26), "predictions.jsonl") == "runs/2026-11-26/predictions.jsonl"


def test_check_inside_accepts_the_loop_root_and_allowed_locations() -> None:
    settings = LoopSettings(**{**REQUIRED, "allowed_s3_uris": ("s3://shared-data/validation/",)})
    assert settings.root_uri == f"s3://{REQUIRED['bucket']}/active-learning/"
    inside = f"s3://{REQUIRED['bucket']}/active-learning/incoming/2026-11-25/a.jpg"
    assert settings.check_inside(inside, "image") == inside
    assert settings.check_inside("s3://shared-data/validation/v.manifest", "validation") is not None


@pytest.mark.parametrize(
    "uri",
    [
        "s3://other-bucket/active-learning/x.jpg",
        "s3://{bucket}/active-learning-other/x.jpg",  # a sibling prefix that merely starts alike
        "s3://{bucket}/elsewhere/x.jpg",
        "https://example.com/x.jpg",
    ],
)
def test_check_inside_refuses_what_lies_outside(uri: str) -> None:
    settings = LoopSettings(**REQUIRED)
    with pytest.raises(ConfinementError, match="source-ref"):
        settings.check_inside(uri.format(bucket=REQUIRED["bucket"]), "source-ref")


def test_check_inside_with_an_empty_prefix_allows_the_whole_bucket() -> None:
    settings = LoopSettings(**{**REQUIRED, "prefix": ""})
    assert settings.root_uri == f"s3://{REQUIRED['bucket']}/"
    settings.check_inside(f"s3://{REQUIRED['bucket']}/anything", "x")


def test_allowed_s3_uris_must_be_s3_locations() -> None:
    with pytest.raises(SettingsError, match="allowed_s3_uris"):
        LoopSettings(**{**REQUIRED, "allowed_s3_uris": ("https://x/",)})
