from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from active_learning.naming import (
    A2I_NAME_PATTERN,
    SAGEMAKER_NAME_PATTERN,
    InvalidNameError,
    a2i_name,
    check_a2i_name,
    check_sagemaker_name,
    endpoint_config_name,
    flow_definition_name,
    human_loop_name,
    model_name,
    sagemaker_name,
    stable_hash,
    task_ui_name,
    training_job_name,
)


def test_human_loop_name_is_deterministic_and_per_image_and_day() -> None:
    first = human_loop_name("al", date(2026, 11, 26), "s3://b/incoming/2026-11-26/a.jpg")
    assert first == human_loop_name("al", "2026-11-26", "s3://b/incoming/2026-11-26/a.jpg")
    assert first.startswith("al-20261126-")
    assert first != human_loop_name("al", "2026-11-26", "s3://b/incoming/2026-11-26/b.jpg")
    assert first != human_loop_name("al", "2026-11-25", "s3://b/incoming/2026-11-26/a.jpg")
    assert A2I_NAME_PATTERN.match(first)


def test_task_ui_and_flow_definition_follow_their_inputs() -> None:
    ui = task_ui_name("My_Project", "<template/>")
    assert ui == task_ui_name("My_Project", "<template/>") != task_ui_name("My_Project", "<other/>")
    assert ui.startswith("my-project-ui-")
    settings = {"task_count": 1, "workteam": "arn"}
    fd = flow_definition_name("al", ui, settings)
    assert fd == flow_definition_name("al", ui, dict(reversed(settings.items())))
    assert fd != flow_definition_name("al", ui, {**settings, "task_count": 2})


def test_sagemaker_names_keep_case_and_fit() -> None:
    job = training_job_name("ActiveLearning", "2026-11-26", "s3://b/model.tar.gz")
    assert job.startswith("ActiveLearning-20261126-")
    assert SAGEMAKER_NAME_PATTERN.match(job)
    assert model_name("x" * 80, "s3://b/m.tar.gz").endswith(stable_hash("s3://b/m.tar.gz"))
    assert len(model_name("x" * 80, "s3://b/m.tar.gz")) == 63
    assert endpoint_config_name("ep", "m1", {"a": 1}) != endpoint_config_name("ep", "m2", {"a": 1})


def test_hash_is_stable_across_runs() -> None:
    # fixed value: a changed hash function would orphan every resource created before
    assert stable_hash("s3://b/a.jpg") == "5c3aed1ec7b5"


def test_a_prefix_with_nothing_usable_is_an_error_when_nothing_is_left() -> None:
    with pytest.raises(InvalidNameError):
        a2i_name("___")


text = st.text(min_size=0, max_size=100)


@given(text, st.lists(text, max_size=4))
def test_a2i_names_are_always_valid_or_rejected(prefix: str, parts: list[str]) -> None:
    try:
        name = a2i_name(prefix, *parts)
    except InvalidNameError:
        return
    assert 1 <= len(name) <= 63
    assert A2I_NAME_PATTERN.match(name)
    assert name == a2i_name(prefix, *parts)


@given(text, st.lists(st.text(alphabet="abcdef0123456789", min_size=1, max_size=16), min_size=1, max_size=3))
def test_sagemaker_names_with_a_hash_suffix_are_always_valid(prefix: str, parts: list[str]) -> None:
    name = sagemaker_name(prefix, *parts)
    assert 1 <= len(name) <= 63
    assert SAGEMAKER_NAME_PATTERN.match(name)


def test_checks_name_the_kind_and_the_rule() -> None:
    assert check_a2i_name("human loop", "al-20261126-abc") == "al-20261126-abc"
    with pytest.raises(InvalidNameError, match="invalid flow definition name 'Bad_Name'"):
        check_a2i_name("flow definition", "Bad_Name")
    assert check_sagemaker_name("model", "Model-1") == "Model-1"
    with pytest.raises(InvalidNameError, match="invalid SageMaker model name"):
        check_sagemaker_name("model", "x" * 64)
