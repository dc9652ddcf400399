from __future__ import annotations

import re
from dataclasses import fields
from datetime import date

import jsonschema
import pytest

from active_learning.classes import VOC_CLASSES
from active_learning.settings import (
    ConfinementError,
    DagSettings,
    EnvironmentDefaults,
    LoopSettings,
    SettingsError,
    setting_schemas,
    split_s3_uri,
)

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
            "require_approval": "true",
        }
    )
    assert settings.threshold == 0.4
    assert settings.max_reviews is None
    assert settings.task_count == 2
    assert settings.class_names == ("cat", "dog")
    assert settings.require_approval is True


def test_a_misspelled_setting_is_refused_with_the_close_match() -> None:
    with pytest.raises(
        SettingsError, match=r"unknown setting\(s\): 'treshold' \(did you mean 'threshold'\?\)"
    ):
        LoopSettings.from_mapping({**REQUIRED, "treshold": 0.3})


def test_every_unknown_key_is_named_even_without_a_close_match() -> None:
    with pytest.raises(SettingsError, match=r"'zzz', 'task_cnt' \(did you mean 'task_count'\?\)"):
        LoopSettings.from_mapping({**REQUIRED, "zzz": 1, "task_cnt": 2})


@pytest.mark.parametrize("flag", ["maybe", 2, "tru"])
def test_require_approval_must_be_true_or_false(flag: object) -> None:
    with pytest.raises(SettingsError, match="require_approval"):
        LoopSettings.from_mapping({**REQUIRED, "require_approval": flag})


def test_missing_required_settings_are_named() -> None:
    with pytest.raises(SettingsError, match=r"missing required setting\(s\): role_arn$"):
        LoopSettings.from_mapping({"bucket": "b-b-b", "endpoint_name": "e"})


def test_each_review_backend_requires_its_own_settings() -> None:
    """Issue 16.1: workteam_arn was required and validated even when Label Studio reviews."""
    without_team = {k: v for k, v in REQUIRED.items() if k != "workteam_arn"}
    with pytest.raises(SettingsError, match="setting workteam_arn is required with review_backend 'a2i'"):
        LoopSettings.from_mapping(without_team)
    assert LoopSettings.from_mapping({**without_team, "review_backend": "label_studio"}).workteam_arn is None


def test_review_backend_choices_follow_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    from active_learning import reviews

    monkeypatch.setitem(reviews.REVIEW_BACKENDS, "memory", reviews.ReviewBackendEntry("tests.Memory"))
    assert LoopSettings.from_mapping({**REQUIRED, "review_backend": "memory"}).review_backend == "memory"
    assert setting_schemas()["review_backend"]["enum"] == ["a2i", "label_studio", "memory"]
    assert setting_schemas()["predict_mode"]["enum"] == ["realtime", "batch_transform", "auto"]


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
        ({"validation_manifest_uri": "s3://"}, "validation_manifest_uri"),
        ({"validation_manifest_uri": "s3://my-bucket"}, "validation_manifest_uri"),
        ({"validation_manifest_uri": "s3://my-bucket/"}, "validation_manifest_uri"),
        (
            {"validation_manifest_uri": "s3://Bad_Bucket/active-learning/v.manifest"},
            "validation_manifest_uri",
        ),
        (
            {"validation_manifest_uri": "s3://my-bucket/active-learning/validation/"},
            "validation_manifest_uri",
        ),
        ({"initial_model_data_url": "https://example.com/model.tar.gz"}, "initial_model_data_url"),
        ({"initial_model_data_url": "s3://"}, "initial_model_data_url"),
        ({"threshold": float("nan")}, "threshold"),
        ({"max_reviews": -1}, "max_reviews"),
        ({"audit_fraction": 1.5}, "audit_fraction"),
        ({"selection_strategy": "entropy"}, "selection_strategy.*least-confidence, box-uncertainty"),
        ({"random_share": 1.01}, "random_share"),
        ({"random_share": -0.5}, "random_share"),
        ({"min_new_labels": -1}, "min_new_labels"),
        ({"map_tolerance": -0.1}, "map_tolerance"),
        ({"validation_fraction": 0}, "validation_fraction"),
        ({"keep_models": 1}, "keep_models"),
        ({"class_names": ("cat", "cat")}, "more than once"),
    ],
)
def test_invalid_settings_name_the_setting(override: dict, name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        LoopSettings(**{**REQUIRED, **override})


@pytest.mark.parametrize("name", ["validation_manifest_uri", "initial_model_data_url"])
@pytest.mark.parametrize(
    "uri",
    [
        "s3://other-bucket/active-learning/file",
        "s3://my-bucket/elsewhere/file",
        "s3://my-bucket/active-learning-other/file",  # a sibling prefix that merely starts alike
    ],
)
def test_s3_settings_outside_the_loop_root_are_refused_naming_the_setting(name: str, uri: str) -> None:
    with pytest.raises(
        SettingsError, match=rf"setting {name} '{uri}' is outside s3://my-bucket/active-learning/"
    ):
        LoopSettings(**REQUIRED, **{name: uri})


def test_s3_settings_inside_the_root_or_an_allowed_location_are_accepted() -> None:
    settings = LoopSettings.from_mapping(
        {
            **REQUIRED,
            "validation_manifest_uri": "s3://shared-data/validation/fixed.manifest",
            "initial_model_data_url": "s3://my-bucket/active-learning/models/initial/model.tar.gz",
            "allowed_s3_uris": "s3://shared-data/validation/",
        }
    )
    assert settings.allowed_s3_uris == ("s3://shared-data/validation/",)
    assert settings.validation_manifest_uri == "s3://shared-data/validation/fixed.manifest"
    # one allowed object, without a trailing slash, allows that object only
    exact = "s3://shared-data/models/model.tar.gz"
    assert LoopSettings(
        **REQUIRED, initial_model_data_url=exact, allowed_s3_uris=(exact,)
    ).initial_model_data_url
    with pytest.raises(SettingsError, match="initial_model_data_url"):
        LoopSettings(**REQUIRED, initial_model_data_url=exact + ".old", allowed_s3_uris=(exact,))


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


def test_an_allowed_folder_does_not_allow_its_siblings() -> None:
    settings = LoopSettings(**REQUIRED, allowed_s3_uris=("s3://shared-data/validation",))
    assert settings.check_inside("s3://shared-data/validation/v.manifest", "x")
    with pytest.raises(ConfinementError):
        settings.check_inside("s3://shared-data/validation-old/v.manifest", "x")


def test_allowed_s3_uris_must_be_s3_locations() -> None:
    with pytest.raises(SettingsError, match="allowed_s3_uris"):
        LoopSettings(**{**REQUIRED, "allowed_s3_uris": ("https://x/",)})


# Params from the fields -------------------------------------------------------------------------


def test_every_setting_has_a_param_spec_with_its_default_type_bounds_and_description() -> None:
    schemas = setting_schemas()

    assert list(schemas) == [f.name for f in fields(LoopSettings)]
    assert schemas["threshold"] == {
        "default": 0.5,
        "type": "number",
        "minimum": 0,
        "maximum": 1,
        "description": "review images whose top score is below this",
    }
    assert schemas["bucket"]["default"] == ""  # required: the form asks for it
    assert schemas["max_reviews"]["type"] == ["null", "integer"]
    assert schemas["class_names"] == {**schemas["class_names"], "default": list(VOC_CLASSES), "type": "array"}
    assert schemas["require_approval"]["type"] == "boolean"
    assert schemas["validation_fraction"]["exclusiveMinimum"] == 0
    assert all(spec["description"] for spec in schemas.values())


def test_param_specs_are_valid_json_schemas_that_accept_their_defaults() -> None:
    for spec in setting_schemas().values():
        schema = {k: v for k, v in spec.items() if k != "default"}
        jsonschema.Draft202012Validator.check_schema(schema)
        jsonschema.validate(spec["default"], schema)  # raises, naming the failing schema


def test_a_spec_default_builds_valid_settings_once_the_required_ones_are_given() -> None:
    defaults = {name: spec["default"] for name, spec in setting_schemas().items()}
    assert LoopSettings.from_mapping({**defaults, **REQUIRED}) == LoopSettings(**REQUIRED)


def test_bounds_are_enforced_from_the_field_metadata() -> None:
    for setting_field in fields(LoopSettings):
        if "maximum" in setting_field.metadata:
            with pytest.raises(SettingsError, match=setting_field.name):
                LoopSettings(**REQUIRED, **{setting_field.name: setting_field.metadata["maximum"] + 1})


def test_environment_variables_set_the_defaults() -> None:
    environment = EnvironmentDefaults(
        {
            "AL_BUCKET": "env-bucket",
            "AL_THRESHOLD": "0.3",
            "AL_TASK_COUNT": "2",
            "AL_CLASS_NAMES": "cat,dog",
            "AL_MAX_REVIEWS": "",
            "AL_PREFIX": "",
            "AL_REQUIRE_APPROVAL": "True",
            "AL_ALLOWED_S3_URIS": "s3://shared/a/,s3://shared/b/",
            "UNRELATED": "x",
        }
    )
    specs = environment.param_specs()

    assert environment.problems == []
    assert specs["bucket"]["default"] == "env-bucket"
    assert specs["threshold"]["default"] == 0.3
    assert specs["task_count"]["default"] == 2
    assert specs["class_names"]["default"] == ["cat", "dog"]
    assert specs["max_reviews"]["default"] is None
    assert specs["prefix"]["default"] == ""
    assert specs["require_approval"]["default"] is True
    assert specs["allowed_s3_uris"]["default"] == ["s3://shared/a/", "s3://shared/b/"]
    assert specs["endpoint_name"]["default"] == "active-learning-od"


def test_empty_environment_variables_mean_not_set() -> None:
    names = [f.name for f in fields(LoopSettings) if f.name != "prefix"]
    environment = EnvironmentDefaults({f"AL_{name.upper()}": "" for name in names})

    assert environment.param_specs() == setting_schemas()  # valid Params: the DAG still loads
    assert environment.problems == []


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("AL_THRESHOLD", "abc", "could not convert string to float"),
        ("AL_THRESHOLD", "1.5", "must be >= 0 and <= 1"),
        ("AL_THRESHOLD", "nan", "expected a finite number"),
        ("AL_TASK_COUNT", "2.5", "invalid literal"),
        ("AL_TASK_COUNT", "0", "must be >= 1 and <= 3"),
        ("AL_REQUIRE_APPROVAL", "sometimes", "expected true or false"),
    ],
)
def test_a_bad_environment_value_is_recorded_naming_the_variable_never_raised(
    variable: str, value: str, problem: str
) -> None:
    environment = EnvironmentDefaults({variable: value})
    name = variable.removeprefix("AL_").lower()

    specs = environment.param_specs()

    [recorded] = environment.problems
    assert recorded.startswith(f"{variable}={value!r} is not valid for setting {name}: ")
    assert problem in recorded
    # the built-in default stands in, so that the Params stay valid and the DAG loads
    assert specs[name]["default"] == setting_schemas()[name]["default"]
    assert f"INVALID {variable}" in specs[name]["description"]
    for spec in specs.values():  # every default valid, as Airflow requires of a scheduled DAG
        jsonschema.validate(spec["default"], {k: v for k, v in spec.items() if k != "default"})


def test_dag_level_knobs_record_bad_values_and_keep_the_default() -> None:
    environment = EnvironmentDefaults(
        {
            "AL_WAITER_DELAY_SECONDS": "soon",
            "AL_REVIEW_TIMEOUT_HOURS": "-1",
            "AL_REVIEW_POLL_SECONDS": "60",
            "AL_MIN_COMPLETED_FRACTION": "2",
            "AL_REVIEW_ON_TIMEOUT": "explode",
            "AL_AWS_CONN_ID": "",
        }
    )

    knobs = environment.dag_settings()

    assert (knobs.waiter_delay_seconds, knobs.review_timeout_hours) == (30, 240)
    assert knobs.review_poll_seconds == 60.0
    assert (knobs.min_completed_fraction, knobs.review_on_timeout) == (1.0, "continue")
    assert knobs.aws_conn_id == "aws_default"
    assert environment.problems == [
        "AL_WAITER_DELAY_SECONDS='soon' is not valid for setting waiter_delay_seconds: "
        "invalid literal for int() with base 10: 'soon'",
        "AL_REVIEW_TIMEOUT_HOURS='-1' is not valid for setting review_timeout_hours: must be > 0",
        "AL_MIN_COMPLETED_FRACTION='2' is not valid for setting min_completed_fraction: must be > 0 and <= 1",
        "AL_REVIEW_ON_TIMEOUT='explode' is not valid for setting review_on_timeout: must be one of "
        "continue, fail",
    ]


def test_dag_settings_reject_what_their_fields_do_not_allow() -> None:
    with pytest.raises(
        SettingsError, match="setting review_on_timeout='later' must be one of continue, fail"
    ):
        DagSettings(review_on_timeout="later")


def test_the_selection_strategy_and_random_share_come_from_params() -> None:
    settings = LoopSettings.from_mapping(
        {**REQUIRED, "selection_strategy": "box-uncertainty", "random_share": "0.25"}
    )
    assert (settings.selection_strategy, settings.random_share) == ("box-uncertainty", 0.25)


@pytest.mark.parametrize(
    ("bucket", "problem"),
    [
        ("a..b", "must not hold two adjacent dots"),
        ("192.168.1.1", "must not be formatted as an IP address"),
        ("xn--abc", "uses the reserved 'xn--'"),
        ("sthree-data", "uses the reserved 'sthree-'"),
        ("data-s3alias", "uses the reserved '-s3alias'"),
        ("data--ol-s3", "uses the reserved '--ol-s3'"),
        ("ab", "must be 3-63 lower-case letters"),
        ("-abc", "must be 3-63 lower-case letters"),
    ],
)
def test_bucket_names_follow_s3s_full_rules(bucket: str, problem: str) -> None:
    """Issue 15.10: 'a..b', '192.168.1.1' and 'xn--abc' passed."""
    with pytest.raises(
        SettingsError,
        match=rf"setting bucket='{re.escape(bucket)}' is not a valid S3 bucket name: it {problem}",
    ):
        LoopSettings.from_mapping({**REQUIRED, "bucket": bucket})
    with pytest.raises(SettingsError, match="allowed_s3_uris"):
        LoopSettings.from_mapping({**REQUIRED, "allowed_s3_uris": f"s3://{bucket}/shared/"})


@pytest.mark.parametrize(
    ("prefix", "problem"),
    [
        ("a/../b", "must not hold empty, '.' or '..' segments"),
        ("a//b", "must not hold empty, '.' or '..' segments"),
        ("./a", "must not hold empty, '.' or '..' segments"),
        ("a/\x00b", "must not hold control characters"),
        ("a\nb", "must not hold control characters"),
        ("p" * 901, "must be at most 900 bytes"),
        ("é" * 451, "must be at most 900 bytes"),  # 902 bytes in UTF-8
        ("/a", "must not start or end with '/'"),
    ],
)
def test_prefixes_that_s3_or_the_loop_cannot_use_are_refused(prefix: str, problem: str) -> None:
    """Issue 15.10: they were accepted, and the run then found 0 images and succeeded."""
    with pytest.raises(SettingsError, match=rf"setting prefix=.* {re.escape(problem)}"):
        LoopSettings.from_mapping({**REQUIRED, "prefix": prefix})


def test_usable_buckets_and_prefixes_pass() -> None:
    settings = LoopSettings.from_mapping({**REQUIRED, "bucket": "team.data-1", "prefix": "a.b/c-d/é"})
    assert settings.root_uri == "s3://team.data-1/a.b/c-d/é/"
    assert LoopSettings.from_mapping({**REQUIRED, "prefix": "p" * 900}).prefix == "p" * 900
