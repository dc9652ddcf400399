"""Loops from a loops file: one loop per entry, each validated like LoopSettings, a bad one isolated."""

from __future__ import annotations

from pathlib import Path

import pytest

from active_learning.loops import LoopsFileError, read_loops

ENVIRONMENT = {
    "AL_ROLE_ARN": "arn:aws:iam::123456789012:role/Loop",
    "AL_WORKTEAM_ARN": "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/reviewers",
}


def loops_file(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "loops.yaml"
    path.write_text(text)
    return {**ENVIRONMENT, "AL_LOOPS_FILE": str(path)}


def test_without_a_loops_file_there_is_the_one_loop_of_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("active_learning.loops.DEFAULT_LOOPS_FILE", Path("/nonexistent/loops.yaml"))
    [loop] = read_loops({**ENVIRONMENT, "AL_BUCKET": "env-bucket"})
    assert (loop.name, loop.dag_id, loop.problems) == ("", "active_learning", [])
    assert loop.specs["bucket"]["default"] == "env-bucket"


def test_each_entry_is_a_loop_in_the_files_order_its_values_over_the_environments(tmp_path: Path) -> None:
    environment = loops_file(
        tmp_path,
        """
loops:
  - name: pets
    settings:
      {bucket: pets-bucket, endpoint_name: pets-od, threshold: 0.3, alert_sns_topic_arn: "arn:sns:al"}
  - name: cars
    settings: {bucket: cars-bucket, endpoint_name: cars-od, class_names: [car, truck], late_review_hours: 48}
""",
    )
    pets, cars = read_loops({**environment, "AL_THRESHOLD": "0.6"})

    assert (pets.dag_id, cars.dag_id) == ("active_learning__pets", "active_learning__cars")
    assert (pets.problems, cars.problems) == ([], [])
    assert pets.specs["threshold"]["default"] == 0.3
    assert cars.specs["threshold"]["default"] == 0.6  # the environment's, as every loop's default
    assert cars.specs["class_names"]["default"] == ["car", "truck"]
    assert pets.specs["role_arn"]["default"] == ENVIRONMENT["AL_ROLE_ARN"]
    assert pets.knobs.alert_sns_topic_arn.endswith(":al")
    assert cars.knobs.late_review_hours == 48


def test_a_bad_entry_keeps_its_loop_with_problems_naming_loop_setting_and_value(tmp_path: Path) -> None:
    environment = loops_file(
        tmp_path,
        """
loops:
  - name: good
    settings: {bucket: good-bucket, endpoint_name: good-od}
  - name: bad
    settings:
      {bucket: bad-bucket, endpoint_name: good-od, threshold: 2, treshold: 0.4, review_on_timeout: explode}
  - name: Bad Name
  - name: good
    settings: {bucket: other-bucket, endpoint_name: other-od}
""",
    )
    good, bad, unnamed, twice = read_loops(environment)

    assert good.problems == []
    assert bad.dag_id == "active_learning__bad"
    assert bad.specs["threshold"]["default"] == 0.5  # the built-in default stands in
    assert (
        "INVALID loop bad: setting threshold=2 must be >= 0 and <= 1" in bad.specs["threshold"]["description"]
    )
    assert bad.problems == [
        "loop bad: unknown setting(s) 'treshold' (did you mean 'threshold'?)",
        "loop bad: setting threshold=2 must be >= 0 and <= 1",
        "loop bad: setting review_on_timeout='explode' must be one of continue, fail",
        "loop bad: setting endpoint_name='good-od' is loop good's too",
    ]
    assert unnamed.dag_id == "active_learning__entry_3"
    assert "name='Bad Name' must be 1-63 lower-case letters" in unnamed.problems[0]
    assert twice.dag_id == "active_learning__good_entry_4"
    assert "loop 'good' is named twice (entry 4)" in twice.problems[0]


def test_two_loops_on_the_same_data_are_refused(tmp_path: Path) -> None:
    environment = loops_file(
        tmp_path,
        """
loops:
  - {name: one, settings: {bucket: shared, prefix: data, endpoint_name: one}}
  - {name: two, settings: {bucket: shared, prefix: data, endpoint_name: two}}
""",
    )
    _, two = read_loops(environment)
    assert two.problems == ["loop two: s3://shared/data is loop one's data too"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("loops: [\n", "loops file"),
        ("loops: {}\n", "expected a non-empty list under 'loops:'"),
        ("- name: a\n", "expected a non-empty list under 'loops:'"),
    ],
)
def test_a_loops_file_that_cannot_be_read_fails_the_parse_naming_it(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(LoopsFileError, match=message):
        read_loops(loops_file(tmp_path, text))


def test_a_loops_file_variable_naming_no_file_fails_the_parse() -> None:
    with pytest.raises(LoopsFileError, match=r"AL_LOOPS_FILE='/nowhere\.yaml': no such file"):
        read_loops({"AL_LOOPS_FILE": "/nowhere.yaml"})
