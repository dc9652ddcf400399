"""StartHumanLoopsOperator with the A2I backend: predictions.jsonl in moto S3, the A2I runtime
stubbed with botocore's Stubber."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.stub import ANY, Stubber

from active_learning.classes import VOC_CLASSES
from active_learning.hooks.a2i import A2IRuntimeHook
from active_learning.naming import human_loop_name
from active_learning.operators.human_loops import StartHumanLoopsOperator
from active_learning.review_backends.a2i import input_content
from tests.unit.operators.conftest import (
    ACCOUNT,
    DAY,
    FLOW_ARN,
    FLOW_DEFINITION_NAME,
    REGION,
    RUNS,
    JsonMatching,
    exists,
    operator_kwargs,
    put_lines,
    read_lines,
    read_text,
    source,
)

PREDICTIONS = f"{RUNS}predictions.jsonl"
# what create_human_review_workflow returns with the A2I backend
SET_UP = {
    "review_backend": "a2i",
    "flow_definition_name": FLOW_DEFINITION_NAME,
    "flow_definition_arn": FLOW_ARN,
    "human_task_ui_arn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:human-task-ui/active-learning-ui-0123",
}
HUMAN_LOOPS = f"{RUNS}human-loops.jsonl"

CAT = {
    "source": source("cat.jpg"),
    "width": 640,
    "height": 480,
    "format": "JPEG",
    "detections": [
        [7.0, 0.45, 0.1, 0.25, 0.55, 0.75],
        [11.0, 0.3, 0.5, 0.1, 1.02, 0.6],  # crosses the right edge: clipped
        [14.0, 0.05, 0.0, 0.0, 0.5, 0.5],  # below the 0.1 default floor: not shown
    ],
    "top_score": 0.45,
    "review": True,
    "reason": "low-confidence",
}
# The cat's boxes in pixels, computed by hand from the normalized corners and 640x480.
CAT_BOXES = [
    {"label": "cat", "left": 64, "top": 120, "width": 288, "height": 240},
    {"label": "dog", "left": 320, "top": 48, "width": 320, "height": 240},
]
EMPTY = {
    "source": source("empty.png"),
    "width": 200,
    "height": 100,
    "format": "PNG",
    "detections": [],
    "top_score": None,
    "review": True,
    "reason": "no-detections",
}
DOG = {
    "source": source("dog.jpg"),
    "width": 320,
    "height": 240,
    "format": "JPEG",
    "detections": [[11.0, 0.97, 0.0, 0.0, 1.0, 1.0]],
    "top_score": 0.97,
    "review": False,
    "reason": "confident",
}
OVER_BUDGET = {**DOG, "source": source("budget.jpg"), "top_score": 0.3, "reason": "over-review-budget"}


def loop_name(record: dict[str, Any]) -> str:
    return human_loop_name("active-learning", DAY, record["source"])


def loop_arn(record: dict[str, Any]) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:human-loop/{loop_name(record)}"


def start_params(record: dict[str, Any], boxes: list[dict[str, Any]]) -> dict[str, Any]:
    content = {"taskObject": record["source"], "labels": list(VOC_CLASSES), "initialValue": boxes}
    return {
        "HumanLoopName": loop_name(record),
        "FlowDefinitionArn": FLOW_ARN,
        "HumanLoopInput": {"InputContent": JsonMatching(content)},
    }


def described(record: dict[str, Any], created: datetime) -> dict[str, Any]:
    """A DescribeHumanLoop answer for the record's loop, under the operator's flow definition."""
    return {
        "CreationTime": created,
        "HumanLoopStatus": "InProgress",
        "HumanLoopName": loop_name(record),
        "HumanLoopArn": loop_arn(record),
        "FlowDefinitionArn": FLOW_ARN,
    }


def earlier_line(record: dict[str, Any], created: datetime) -> dict[str, Any]:
    """A line of the human-loops.jsonl an earlier try or run wrote."""
    return {
        "name": loop_name(record),
        "source": record["source"],
        "reason": record["reason"],
        "arn": loop_arn(record),
        "started": True,
        "created": created.isoformat(),
    }


def window(result: dict[str, Any]) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(result["created_after"]), datetime.fromisoformat(result["created_before"])


@pytest.fixture
def op() -> StartHumanLoopsOperator:
    return StartHumanLoopsOperator(
        task_id="start_human_loops", review_set_up=SET_UP, concurrency=1, **operator_kwargs()
    )


@pytest.fixture
def a2i(s3: Any, op: StartHumanLoopsOperator) -> Iterator[Stubber]:
    """The operator's own cached A2I client, stubbed; every queued answer must be used."""
    with Stubber(op.aws_hook(A2IRuntimeHook).conn) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def test_template_fields(op: StartHumanLoopsOperator) -> None:
    assert {"settings", "day", "review_set_up", "aws_conn_id"} <= set(op.template_fields)


def listing(
    *records_and_times: tuple[dict[str, Any], datetime], status: str = "InProgress"
) -> dict[str, Any]:
    """A ListHumanLoops page of the flow definition: the given loops (and one of another day)."""
    other_day = human_loop_name("active-learning", "2026-11-25", source("old.jpg"))
    summaries = [
        {"HumanLoopName": other_day, "HumanLoopStatus": "Completed", "CreationTime": datetime.now(UTC)}
    ] + [
        {"HumanLoopName": loop_name(record), "HumanLoopStatus": status, "CreationTime": created}
        for record, created in records_and_times
    ]
    return {"HumanLoopSummaries": [summary | {"FlowDefinitionArn": FLOW_ARN} for summary in summaries]}


LIST_PARAMS = {
    "FlowDefinitionArn": FLOW_ARN,
    "CreationTimeAfter": ANY,
    "CreationTimeBefore": ANY,
    "SortOrder": "Ascending",
    "MaxResults": 100,
}


def marker(record: dict[str, Any]) -> str:
    return f"{RUNS}human-loops/{loop_name(record)}.json"


def test_starts_one_loop_per_review_with_the_models_boxes(
    s3: Any, a2i: Stubber, op: StartHumanLoopsOperator, context: dict[str, Any]
) -> None:
    put_lines(s3, PREDICTIONS, [CAT, DOG, EMPTY, OVER_BUDGET])
    a2i.add_response("list_human_loops", listing(), LIST_PARAMS)
    a2i.add_response("start_human_loop", {"HumanLoopArn": loop_arn(CAT)}, start_params(CAT, CAT_BOXES))
    a2i.add_response("start_human_loop", {"HumanLoopArn": loop_arn(EMPTY)}, start_params(EMPTY, []))
    before = datetime.now(UTC)

    result = op.execute(context)

    after = datetime.now(UTC)
    created_after = datetime.fromisoformat(result.pop("created_after"))
    assert before - timedelta(minutes=5) <= created_after <= after - timedelta(minutes=5)
    created_before = datetime.fromisoformat(result.pop("created_before"))
    assert before + timedelta(minutes=5) <= created_before <= after + timedelta(minutes=5)
    assert result == {
        "review_backend": "a2i",
        "loops": 2,
        "started": 2,
        "adopted": 0,
        "human_loops_uri": f"s3://my-bucket/{HUMAN_LOOPS}",
        "flow_definition_arn": FLOW_ARN,
    }
    lines = read_lines(s3, HUMAN_LOOPS)
    for line in lines:
        assert before <= datetime.fromisoformat(line.pop("created")) <= after
    expected = [
        {"name": loop_name(record), "source": record["source"], "reason": record["reason"]}
        | {"arn": loop_arn(record), "started": True, "flow_definition_arn": FLOW_ARN}
        for record in (CAT, EMPTY)
    ]
    assert lines == sorted(expected, key=lambda line: line["name"])
    assert all(line["name"].startswith("active-learning-20261126-") for line in expected)
    # each loop was recorded as it started, before the day's file
    for record in (CAT, EMPTY):
        [recorded] = read_lines(s3, marker(record))
        assert recorded["name"] == loop_name(record)


def test_a_retry_adopts_the_loop_a_conflict_reports(
    s3: Any, a2i: Stubber, op: StartHumanLoopsOperator, context: dict[str, Any]
) -> None:
    """A loop A2I does not list yet (listings lag) but answers ConflictException for is adopted."""
    put_lines(s3, PREDICTIONS, [CAT, EMPTY])
    first_try = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    a2i.add_response("list_human_loops", listing(), LIST_PARAMS)
    a2i.add_client_error(
        "start_human_loop",
        service_error_code="ConflictException",
        service_message=f"HumanLoop {loop_name(CAT)} already exists",
        http_status_code=409,
        expected_params=start_params(CAT, CAT_BOXES),
    )
    a2i.add_response("describe_human_loop", described(CAT, first_try), {"HumanLoopName": loop_name(CAT)})
    a2i.add_response("start_human_loop", {"HumanLoopArn": loop_arn(EMPTY)}, start_params(EMPTY, []))

    result = op.execute(context)

    assert (result["loops"], result["started"], result["adopted"]) == (2, 1, 1)
    assert datetime.fromisoformat(result["created_after"]) == first_try - timedelta(minutes=5)
    lines = {line["source"]: line for line in read_lines(s3, HUMAN_LOOPS)}
    assert lines[CAT["source"]] == earlier_line(CAT, first_try) | {
        "started": False,
        "flow_definition_arn": FLOW_ARN,
    }
    assert lines[EMPTY["source"]]["started"] is True


def test_a_rerun_after_a_kill_finds_the_earlier_loops_in_a2i_and_does_not_start_them_again(
    s3: Any, a2i: Stubber, op: StartHumanLoopsOperator, context: dict[str, Any]
) -> None:
    """Issue 7.1: killed mid-start, no file, rerun hours later as try 1 of a new run: the cat's loop,
    which A2I would answer with 200 like a new one, is adopted with its real creation time, so the
    sensor's window covers it."""
    context["ti"].try_number = 1
    first_try = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    put_lines(s3, PREDICTIONS, [CAT, EMPTY])
    a2i.add_response("list_human_loops", listing((CAT, first_try)), LIST_PARAMS)
    # Only the empty image's start is queued: starting the cat again would fail the stub.
    a2i.add_response("start_human_loop", {"HumanLoopArn": loop_arn(EMPTY)}, start_params(EMPTY, []))

    result = op.execute(context)

    assert (result["loops"], result["started"], result["adopted"]) == (2, 1, 1)
    assert datetime.fromisoformat(result["created_after"]) == first_try - timedelta(minutes=5)
    lines = {line["source"]: line for line in read_lines(s3, HUMAN_LOOPS)}
    assert lines[CAT["source"]]["created"] == first_try.isoformat()
    assert lines[CAT["source"]]["arn"] == loop_arn(CAT)
    assert lines[CAT["source"]]["started"] is False


def test_the_day_is_listed_from_its_start_until_after_now(
    s3: Any, a2i: Stubber, op: StartHumanLoopsOperator, context: dict[str, Any]
) -> None:
    put_lines(s3, PREDICTIONS, [])
    requests: list[dict[str, Any]] = []
    op.aws_hook(A2IRuntimeHook).conn.meta.events.register(
        "provide-client-params.sagemaker-a2i-runtime.ListHumanLoops",
        lambda params, **_: requests.append(dict(params)),
    )
    a2i.add_response("list_human_loops", listing(), LIST_PARAMS)

    op.execute(context)

    [request] = requests
    assert request["CreationTimeAfter"] == datetime(2026, 11, 25, 23, 55, tzinfo=UTC)
    assert request["CreationTimeBefore"] > datetime.now(UTC) + timedelta(minutes=4)


def test_loops_of_a_killed_run_whose_images_are_no_longer_routed_are_kept(
    s3: Any, a2i: Stubber, op: StartHumanLoopsOperator, context: dict[str, Any]
) -> None:
    """Issue 7.2: the killed run routed the dog and started its loop, wrote no file; the model changed
    and the rerun routes only the cat. The dog's paid loop is kept, with its image, to be harvested."""
    context["ti"].try_number = 1
    first_try = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    put_lines(s3, PREDICTIONS, [CAT, DOG])
    a2i.add_response("list_human_loops", listing((DOG, first_try), status="Completed"), LIST_PARAMS)
    a2i.add_response("start_human_loop", {"HumanLoopArn": loop_arn(CAT)}, start_params(CAT, CAT_BOXES))

    result = op.execute(context)

    assert (result["loops"], result["started"], result["adopted"]) == (2, 1, 1)
    assert datetime.fromisoformat(result["created_after"]) == first_try - timedelta(minutes=5)
    lines = {line["name"]: line for line in read_lines(s3, HUMAN_LOOPS)}
    assert set(lines) == {loop_name(CAT), loop_name(DOG)}
    assert lines[loop_name(DOG)]["source"] == DOG["source"]
    assert lines[loop_name(DOG)]["started"] is False
    assert lines[loop_name(CAT)]["started"] is True


def test_loops_of_the_earlier_file_and_markers_are_kept_when_a2i_does_not_list_them(
    s3: Any, a2i: Stubber, op: StartHumanLoopsOperator, context: dict[str, Any]
) -> None:
    """Loops under an earlier flow definition (another listing) are known from the file and markers."""
    first_try = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    gone = {**DOG, "review": True, "reason": "low-confidence"}
    put_lines(s3, HUMAN_LOOPS, [earlier_line(gone, first_try)])
    empty_marker = earlier_line(EMPTY, first_try) | {"flow_definition_arn": f"{FLOW_ARN}-old"}
    put_lines(s3, marker(EMPTY), [empty_marker])
    put_lines(s3, PREDICTIONS, [CAT, DOG, {**EMPTY, "review": False}])
    a2i.add_response("list_human_loops", listing(), LIST_PARAMS)
    a2i.add_response("start_human_loop", {"HumanLoopArn": loop_arn(CAT)}, start_params(CAT, CAT_BOXES))

    result = op.execute(context)

    assert (result["loops"], result["started"], result["adopted"]) == (3, 1, 2)
    lines = {line["source"]: line for line in read_lines(s3, HUMAN_LOOPS)}
    assert set(lines) == {CAT["source"], DOG["source"], EMPTY["source"]}
    assert lines[DOG["source"]] == earlier_line(gone, first_try) | {
        "started": False,
        "flow_definition_arn": None,
    }
    assert lines[EMPTY["source"]] == empty_marker | {"started": False}


def test_the_window_ends_a_few_minutes_after_the_task(
    s3: Any, a2i: Stubber, op: StartHumanLoopsOperator, context: dict[str, Any]
) -> None:
    put_lines(s3, PREDICTIONS, [EMPTY])
    a2i.add_response("list_human_loops", listing(), LIST_PARAMS)
    a2i.add_response("start_human_loop", {"HumanLoopArn": loop_arn(EMPTY)}, start_params(EMPTY, []))

    result = op.execute(context)

    now = datetime.now(UTC)
    created_after, created_before = window(result)
    assert created_after < created_before
    assert now + timedelta(minutes=4) <= created_before <= now + timedelta(minutes=5)
    for line in read_lines(s3, HUMAN_LOOPS):
        assert created_after < datetime.fromisoformat(line["created"]) < created_before


def test_an_error_other_than_conflict_fails_the_task(
    s3: Any, a2i: Stubber, op: StartHumanLoopsOperator, context: dict[str, Any]
) -> None:
    put_lines(s3, PREDICTIONS, [CAT])
    a2i.add_response("list_human_loops", listing(), LIST_PARAMS)
    a2i.add_client_error(
        "start_human_loop",
        service_error_code="ValidationException",
        service_message="FlowDefinition is not in Active status",
        http_status_code=400,
        expected_params=start_params(CAT, CAT_BOXES),
    )

    with pytest.raises(ClientError, match="not in Active status") as raised:
        op.execute(context)

    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert not exists(s3, HUMAN_LOOPS)


def test_no_review_means_no_loop_and_an_empty_file(
    s3: Any, a2i: Stubber, op: StartHumanLoopsOperator, context: dict[str, Any]
) -> None:
    put_lines(s3, PREDICTIONS, [DOG, OVER_BUDGET])
    a2i.add_response("list_human_loops", listing(), LIST_PARAMS)

    result = op.execute(context)  # no start queued: any start would fail

    assert (result["loops"], result["started"], result["adopted"]) == (0, 0, 0)
    assert read_text(s3, HUMAN_LOOPS) == ""


def test_missing_predictions_fail_the_task(
    s3: Any, a2i: Stubber, op: StartHumanLoopsOperator, context: dict[str, Any]
) -> None:
    a2i.add_response("list_human_loops", listing(), LIST_PARAMS)
    with pytest.raises(ClientError) as raised:
        op.execute(context)

    assert raised.value.response["Error"]["Code"] == "NoSuchKey"
    assert not exists(s3, HUMAN_LOOPS)


PERSON_BOX = {"label": "person", "left": 0, "top": 0, "width": 320, "height": 240}


@pytest.mark.parametrize(
    ("min_score", "max_boxes", "boxes"),
    [(0.2, 50, CAT_BOXES), (0.0, 50, [*CAT_BOXES, PERSON_BOX]), (0.0, 1, CAT_BOXES[:1])],
)
def test_initial_boxes_follow_the_settings(
    s3: Any, min_score: float, max_boxes: int, boxes: list[dict[str, Any]]
) -> None:
    settings = {"initial_box_min_score": min_score, "max_initial_boxes": max_boxes}
    op = StartHumanLoopsOperator(
        task_id="start_human_loops", review_set_up=SET_UP, **operator_kwargs(**settings)
    )
    s3.put_object(Bucket="my-bucket", Key=PREDICTIONS, Body=json.dumps(CAT) + "\n")

    (request,) = op.requests()
    content = json.loads(input_content(request))

    assert content == {"taskObject": CAT["source"], "labels": list(VOC_CLASSES), "initialValue": boxes}


def test_the_default_floor_shows_a_weak_models_best_boxes() -> None:
    """Issue 16.6: day-1 Label Studio tasks opened with no model box (a 0.2 floor no Param showed)."""
    from active_learning.settings import LoopSettings

    assert LoopSettings.__dataclass_fields__["initial_box_min_score"].default <= 0.1
