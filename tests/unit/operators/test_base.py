"""operators/base.py: settings and run day from templated fields, S3 JSON Lines I/O (moto)."""

from __future__ import annotations

import json
from datetime import date
from typing import Any
from unittest.mock import MagicMock

import jinja2
import pytest
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.common.compat.sdk import AirflowFailException
from botocore.exceptions import ClientError

from active_learning.hooks.s3_lines import (
    S3JsonLinesWriter,
    iter_json_lines,
    iter_keys,
    iter_objects,
    put_json_lines,
)
from active_learning.manifest import ManifestFormatError
from active_learning.operators.base import as_mapping, refuse_bad_environment
from active_learning.operators.predict import BatchPredictOperator
from active_learning.settings import LoopSettings, SettingsError
from tests.aws_faults import Http503
from tests.unit.operators.conftest import BUCKET, REGION, SETTINGS, operator_kwargs, put, read_text

KEY = "active-learning/runs/2026-11-26/things.jsonl"


@pytest.fixture
def hook(s3: Any) -> S3Hook:
    return S3Hook(aws_conn_id=None, region_name=REGION)


def make_operator(**kwargs: Any) -> BatchPredictOperator:
    return BatchPredictOperator(task_id="predict", **{**operator_kwargs(), **kwargs})


def write_then_fail(hook: S3Hook) -> None:
    with S3JsonLinesWriter(hook, BUCKET, KEY) as writer:
        writer.write({"half": "written"})
        raise RuntimeError("boom")


# S3JsonLinesWriter / put_json_lines ---------------------------------------------------------------


def test_writer_uploads_the_lines_whole_on_success(s3: Any, hook: S3Hook) -> None:
    with S3JsonLinesWriter(hook, BUCKET, KEY) as writer:
        writer.write({"a": 1})
        writer.write({"b": "été", "c": [1.5, None]})
        assert writer.count == 2

    assert read_text(s3, KEY) == '{"a": 1}\n{"b": "\\u00e9t\\u00e9", "c": [1.5, null]}\n'
    assert writer.uri == f"s3://{BUCKET}/{KEY}"


def test_writer_leaves_the_object_untouched_when_the_block_raises(s3: Any, hook: S3Hook) -> None:
    put(s3, KEY, '{"from": "the previous try"}\n')

    with pytest.raises(RuntimeError, match="boom"):
        write_then_fail(hook)

    assert read_text(s3, KEY) == '{"from": "the previous try"}\n'


def test_writer_creates_nothing_when_the_first_try_fails(s3: Any, hook: S3Hook) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        write_then_fail(hook)

    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


def test_put_json_lines_overwrites_and_counts(s3: Any, hook: S3Hook) -> None:
    put(s3, KEY, "stale\nlines\nfrom\nbefore\n")

    assert put_json_lines(hook, BUCKET, KEY, ({"n": n} for n in range(3))) == 3
    assert read_text(s3, KEY) == '{"n": 0}\n{"n": 1}\n{"n": 2}\n'
    assert put_json_lines(hook, BUCKET, KEY, []) == 0
    assert read_text(s3, KEY) == ""


# iter_json_lines / iter_keys ----------------------------------------------------------


def test_iter_json_lines_streams_every_line_back(s3: Any, hook: S3Hook) -> None:
    # Several chunks of the streaming body, non-ASCII text and a blank line.
    lines = [{"n": n, "text": "ü" * (n % 50), "nested": {"list": [n]}} for n in range(2000)]
    put(s3, KEY, "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines) + "\n")

    assert list(iter_json_lines(hook, BUCKET, KEY)) == lines


def test_iter_json_lines_missing_object(s3: Any, hook: S3Hook) -> None:
    assert list(iter_json_lines(hook, BUCKET, KEY, missing_ok=True)) == []
    with pytest.raises(ClientError) as raised:
        list(iter_json_lines(hook, BUCKET, KEY))
    assert raised.value.response["Error"]["Code"] == "NoSuchKey"


def test_iter_json_lines_missing_ok_does_not_hide_a_missing_bucket(s3: Any, hook: S3Hook) -> None:
    with pytest.raises(ClientError) as raised:
        list(iter_json_lines(hook, "no-such-bucket", KEY, missing_ok=True))
    assert raised.value.response["Error"]["Code"] == "NoSuchBucket"


def test_iter_json_lines_names_a_bad_line(s3: Any, hook: S3Hook) -> None:
    put(s3, KEY, '{"ok": 1}\n[1, 2]\n')

    with pytest.raises(ManifestFormatError, match="line 2"):
        list(iter_json_lines(hook, BUCKET, KEY))


def test_iter_keys_reads_every_page_and_skips_folder_markers(s3: Any) -> None:
    for key in ("in/a.jpg", "in/", "in/sub/", "in/sub/b.png", "other/c.jpg", "in.jpg"):
        put(s3, key, b"x")

    assert sorted(iter_keys(s3, BUCKET, "in/")) == ["in/a.jpg", "in/sub/b.png"]


@pytest.mark.parametrize(
    ("listing", "expected"),
    [(iter_keys, ["p/1", "p/2"]), (iter_objects, [("p/1", 10), ("p/2", 7_000_000)])],
)
def test_listings_follow_the_paginator(listing: Any, expected: list[Any]) -> None:
    client = MagicMock()
    client.get_paginator.return_value.paginate.return_value = iter(
        [
            {"Contents": [{"Key": "p/1", "Size": 10}, {"Key": "p/", "Size": 0}]},
            {},
            {"Contents": [{"Key": "p/2", "Size": 7_000_000}]},
        ]
    )

    assert list(listing(client, BUCKET, "p/")) == expected
    client.get_paginator.assert_called_once_with("list_objects_v2")
    client.get_paginator.return_value.paginate.assert_called_once_with(Bucket=BUCKET, Prefix="p/")


# LoopOperatorMixin --------------------------------------------------------------------------------


def test_loop_settings_from_a_mapping() -> None:
    settings = make_operator(settings={**SETTINGS, "threshold": "0.3", "max_reviews": "7"}).loop_settings

    assert isinstance(settings, LoopSettings)
    assert (settings.bucket, settings.threshold, settings.max_reviews) == (BUCKET, 0.3, 7)


def test_loop_settings_decodes_the_json_the_dag_template_renders() -> None:
    params = {**SETTINGS, "max_reviews": 25, "audit_fraction": 0.05, "class_names": ["cat", "dog & co"]}
    rendered = jinja2.Environment().from_string("{{ params | tojson }}").render(params=params)
    assert isinstance(rendered, str)

    settings = make_operator(settings=rendered).loop_settings

    assert settings.max_reviews == 25
    assert settings.audit_fraction == 0.05
    assert settings.class_names == ("cat", "dog & co")
    assert settings.endpoint_name == "object-detection"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{{ params | tojson }}", "neither a mapping nor a JSON object"),  # left unrendered
        ("bucket=my-bucket", "neither a mapping nor a JSON object"),
        ("", "neither a mapping nor a JSON object"),
        ('["my-bucket"]', "must be a mapping, got list"),
        ("null", "must be a mapping, got NoneType"),
        (json.dumps({"bucket": "my-bucket"}), "missing required setting"),
        ({**SETTINGS, "threshold": "high"}, "threshold"),
    ],
)
def test_loop_settings_rejects_garbage(value: Any, message: str) -> None:
    with pytest.raises(SettingsError, match=message) as raised:
        make_operator(settings=value).loop_settings  # noqa: B018
    assert isinstance(raised.value, AirflowFailException)  # a retry cannot fix it


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"treshold": 0.3}, r"unknown setting\(s\): 'treshold' \(did you mean 'threshold'\?\)"),
        ({"threshold": 1.5}, r"setting threshold=1.5 must be >= 0 and <= 1"),
        (
            {"validation_manifest_uri": "s3://"},
            r"setting validation_manifest_uri='s3://' must be s3://bucket/key",
        ),
        (
            {"validation_manifest_uri": "s3://elsewhere/v.manifest"},
            r"setting validation_manifest_uri .* is outside",
        ),
    ],
)
def test_a_wrong_setting_fails_the_task_once_without_retries(override: dict[str, Any], message: str) -> None:
    with pytest.raises(AirflowFailException, match=message):
        make_operator(settings={**SETTINGS, **override}).loop_settings  # noqa: B018


def test_a_bad_day_fails_the_task_once_without_retries() -> None:
    with pytest.raises(AirflowFailException, match="day='yesterday' is not a YYYY-MM-DD date"):
        make_operator(day="yesterday").run_day  # noqa: B018


@pytest.mark.parametrize(("value", "message"), [("[1]", "must be a mapping, got list"), ("{", "neither")])
def test_a_malformed_mapping_argument_fails_once_without_retries(value: str, message: str) -> None:
    with pytest.raises(AirflowFailException, match=message):
        as_mapping(value, "training")


def test_refuse_bad_environment_fails_once_with_every_problem_read_by_then() -> None:
    problems: list[str] = []
    check = refuse_bad_environment(problems)
    check({})  # nothing wrong: the task runs

    problems.append("AL_THRESHOLD='abc' is not valid for setting threshold: could not convert")
    problems.append("AL_WAITER_DELAY_SECONDS='soon' is not a whole number")  # read after the hook was made
    with pytest.raises(AirflowFailException, match=r"AL_THRESHOLD='abc' .*; AL_WAITER_DELAY_SECONDS='soon'"):
        check({})


def test_run_day() -> None:
    assert make_operator(day="2026-11-26").run_day == date(2026, 11, 26)
    assert make_operator(day="2024-02-29").run_day == date(2024, 2, 29)


@pytest.mark.parametrize(
    "day", ["2026-02-30", "2026-13-01", "26/11/2026", "yesterday", "", "{{ ds }}", "None"]
)
def test_run_day_rejects_bad_dates(day: str) -> None:
    with pytest.raises(SettingsError, match="not a YYYY-MM-DD date"):
        make_operator(day=day).run_day  # noqa: B018


def test_the_s3_hook_shares_the_operators_connection_and_config() -> None:
    op = make_operator(region_name="eu-west-1", botocore_config={"retries": {"max_attempts": 3}})

    s3 = op.s3

    assert isinstance(s3, S3Hook)
    assert s3.aws_conn_id is None
    assert s3.region_name == "eu-west-1"
    assert s3.config.retries == {"max_attempts": 3}
    assert op.s3 is s3  # one hook (one session, one role assumption) per operator


def test_retries_of_the_tasks_own_clients_are_logged_after_execute(
    s3: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    """Issue 7.16: 185 faulted requests produced no log line, only a slower day."""
    op = make_operator()
    op.pre_execute({})
    op.s3.get_conn().meta.events.register_first("before-send.s3.ListObjectsV2", Http503(2))
    op.s3.get_conn().list_objects_v2(Bucket=BUCKET)
    op.post_execute({})

    assert op.retry_log.describe() == "1 of 1 requests retried, 2 retries (ListObjectsV2 2)"
    assert "AWS requests: 1 of 1 requests retried, 2 retries (ListObjectsV2 2)" in capfd.readouterr().out


def test_the_line_counts_the_requests_before_a_deferral_and_the_triggers(
    s3: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    """Issue 15.6: under 25 % throttling, 21 of 201 faults were in no "AWS requests" line."""
    op = make_operator()
    op.pre_execute({})  # the resumed try watches its own clients; its event brings the rest
    op.execute_complete = MagicMock(return_value={})  # type: ignore[method-assign]
    carried = {"calls": 7, "retried_calls": 2, "retries": {"ListHumanLoops": 3}}
    event = {"status": "success", "aws_requests": carried}

    op.resume_execution("execute_complete", {"event": event}, {})
    op.s3.get_conn().list_objects_v2(Bucket=BUCKET)
    op.post_execute({})

    op.execute_complete.assert_called_once_with({}, event=event)
    assert "AWS requests: 2 of 8 requests retried, 3 retries (ListHumanLoops 3)" in capfd.readouterr().out
