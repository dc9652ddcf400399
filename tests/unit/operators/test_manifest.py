"""AugmentedManifestOperator: A2I outputs in moto S3 in A2I's layout, DescribeHumanLoop stubbed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowException
from botocore.stub import Stubber

from active_learning.classes import class_map
from active_learning.hooks.a2i import A2IRuntimeHook
from active_learning.naming import human_loop_name
from active_learning.operators.manifest import AugmentedManifestOperator
from tests.support import load_fixture
from tests.unit.operators.conftest import (
    ACCOUNT,
    DAY,
    FLOW_ARN,
    FLOW_DEFINITION_NAME,
    PREFIX,
    REGION,
    RUNS,
    exists,
    operator_kwargs,
    put,
    put_lines,
    read_lines,
    read_text,
    source,
)

HUMAN_LOOPS = f"{RUNS}human-loops.jsonl"
PREDICTIONS = f"{RUNS}predictions.jsonl"
MANIFEST = f"{RUNS}augmented.manifest"
REPORT = f"{RUNS}manifest-report.jsonl"
CREATED = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def loop_name(image: str) -> str:
    return human_loop_name("active-learning", DAY, source(image))


def output_key(loop: str) -> str:
    """Where A2I writes a loop's answer: S3OutputPath/<flow definition>/YYYY/MM/DD/hh/mm/ss/<loop>/."""
    return f"{PREFIX}/a2i-output/{FLOW_DEFINITION_NAME}/2026/11/27/10/00/00/{loop}/output.json"


def a2i_output(image: str, *answers: list[dict[str, Any]], width: int = 640, height: int = 480) -> dict:
    """An A2I output document for a crowd-bounding-box task, one answer per worker."""
    return {
        "flowDefinitionArn": FLOW_ARN,
        "humanLoopName": loop_name(image),
        "inputContent": {"taskObject": source(image), "labels": ["cat", "dog"], "initialValue": []},
        "humanAnswers": [
            {
                "answerContent": {
                    "annotatedResult": {
                        "boundingBoxes": boxes,
                        "inputImageProperties": {"width": width, "height": height},
                    }
                },
                "submissionTime": f"2026-11-27T09:5{worker}:00.000Z",
                "workerId": f"worker-{worker}",
                "workerMetadata": {
                    "identityData": {"identityProviderType": "Cognito", "sub": f"sub-{worker}"}
                },
            }
            for worker, boxes in enumerate(answers)
        ],
    }


def described(loop: str, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "CreationTime": CREATED,
        "HumanLoopStatus": status,
        "HumanLoopName": loop,
        "HumanLoopArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:human-loop/{loop}",
        "FlowDefinitionArn": FLOW_ARN,
        **extra,
    }


def completed(loop: str, output_uri: str | None = None) -> dict[str, Any]:
    output_uri = output_uri or f"s3://my-bucket/{output_key(loop)}"
    return described(loop, "Completed", HumanLoopOutput={"OutputS3Uri": output_uri})


def put_predictions(s3: Any, sizes: dict[str, tuple[int, int]]) -> None:
    """The day's predictions.jsonl as batch_predict writes it, with each image's size."""
    put_lines(
        s3,
        PREDICTIONS,
        [
            {
                "source": image if image.startswith("s3://") else source(image),
                "width": width,
                "height": height,
                "format": "JPEG",
                "detections": [],
                "top_score": None,
                "review": True,
                "reason": "no-detections",
            }
            for image, (width, height) in sizes.items()
        ],
    )


def seed_output(image: str) -> dict[str, Any]:
    """The seed's own A2I output (a 3911x2608 photo), for an image of this loop's bucket."""
    document = load_fixture("seed_a2i_output.json")
    document["inputContent"]["taskObject"] = source(image)
    document["humanLoopName"] = loop_name(image)
    return document


def loop_line(image: str) -> dict[str, Any]:
    name = loop_name(image)
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:human-loop/{name}"
    return {"name": name, "source": source(image), "reason": "low-confidence", "arn": arn, "started": True}


@pytest.fixture
def op() -> AugmentedManifestOperator:
    return AugmentedManifestOperator(task_id="augmented_manifest", concurrency=1, **operator_kwargs())


@pytest.fixture
def a2i(s3: Any, op: AugmentedManifestOperator) -> Iterator[Stubber]:
    """The A2I backend's runtime client, stubbed."""
    with Stubber(op.aws_hook(A2IRuntimeHook).conn) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def test_converts_completed_loops_and_reports_every_loop(
    s3: Any, a2i: Stubber, op: AugmentedManifestOperator, context: dict[str, Any]
) -> None:
    images = ["seed.jpg", "failed.jpg", "unicorn.jpg", "two-workers.jpg", "nothing.jpg", "gone.jpg"]
    put_lines(s3, HUMAN_LOOPS, [loop_line(image) for image in images])
    put_predictions(s3, {image: (3911, 2608) if image == "seed.jpg" else (640, 480) for image in images})
    seed, failed, unicorn, two, nothing, gone = (loop_name(image) for image in images)
    # 1. the seed's own A2I output, stored where A2I would have put it
    put(s3, output_key(seed), json.dumps(seed_output("seed.jpg")))
    a2i.add_response("describe_human_loop", completed(seed), {"HumanLoopName": seed})
    # 2. no worker took the task in time
    a2i.add_response(
        "describe_human_loop",
        described(failed, "Failed", FailureReason="The human loop expired before a worker completed it"),
        {"HumanLoopName": failed},
    )
    # 3. a label outside the class list: that box is left out, and reported
    unknown = [{"label": "unicorn", "left": 1, "top": 2, "width": 30, "height": 40}]
    put(s3, output_key(unicorn), json.dumps(a2i_output("unicorn.jpg", unknown)))
    a2i.add_response("describe_human_loop", completed(unicorn), {"HumanLoopName": unicorn})
    # 4. two workers who agree on the cat (their boxes are averaged); one also drew a dog alone
    first = [{"label": "cat", "left": 64, "top": 120, "width": 288, "height": 240}]
    second = [
        {"label": "cat", "left": 66, "top": 118, "width": 290, "height": 244},
        {"label": "dog", "left": 400, "top": 300, "width": 100, "height": 100},
    ]
    put(s3, output_key(two), json.dumps(a2i_output("two-workers.jpg", first, second)))
    a2i.add_response("describe_human_loop", completed(two), {"HumanLoopName": two})
    # 5. the worker removed every box: nothing to train on
    put(s3, output_key(nothing), json.dumps(a2i_output("nothing.jpg", [])))
    a2i.add_response("describe_human_loop", completed(nothing), {"HumanLoopName": nothing})
    # 6. the loop was deleted since
    a2i.add_client_error(
        "describe_human_loop",
        service_error_code="ResourceNotFoundException",
        service_message=f"HumanLoop {gone} does not exist",
        http_status_code=404,
        expected_params={"HumanLoopName": gone},
    )

    result = op.execute(context)

    assert result == {
        "converted": 2,
        "skipped": 3,
        "errored": 1,
        "dropped_boxes": 1,
        "manifest_uri": f"s3://my-bucket/{MANIFEST}",
        "report_uri": f"s3://my-bucket/{REPORT}",
        "agreement": None,  # one worker an image by the settings: no agreement to measure
    }
    manifest = read_lines(s3, MANIFEST)
    # the seed's own conversion, for its image in this loop's bucket
    assert manifest[0] == {
        **load_fixture("seed_manifest_line.json"),
        "source-ref": source("seed.jpg"),
        "a2i-retraining-metadata": {
            **load_fixture("seed_manifest_line.json")["a2i-retraining-metadata"],
            "job-name": f"a2i/{seed}",
        },
    }
    assert manifest[1] == {
        "source-ref": source("two-workers.jpg"),
        "a2i-retraining": {
            "annotations": [{"class_id": 7, "left": 65, "top": 119, "width": 289, "height": 242}],
            "image_size": [{"width": 640, "height": 480, "depth": 3}],
        },
        "a2i-retraining-metadata": {
            "job-name": f"a2i/{two}",
            "class-map": class_map(op.loop_settings.class_names),
            "human-annotated": "yes",
            "objects": [{"confidence": 1}],
            "creation-date": "2026-11-27T09:51:00.000Z",
            "type": "groundtruth/object-detection",
        },
    }
    assert len(manifest) == 2

    report = {line["name"]: line for line in read_lines(s3, REPORT)}
    assert len(report) == len(images)
    assert report[seed] == {
        "name": seed,
        "source": source("seed.jpg"),
        "dropped_boxes": [],
        "outcome": "converted",
    }
    assert report[two]["outcome"] == "converted"
    assert report[failed] == {
        "name": failed,
        "source": source("failed.jpg"),
        "outcome": "skipped",
        "reason": "loop is Failed: The human loop expired before a worker completed it",
    }
    assert report[nothing]["outcome"] == "skipped"
    assert report[nothing]["reason"] == "no box left to train on"
    assert report[unicorn] == {
        "name": unicorn,
        "source": source("unicorn.jpg"),
        "dropped_boxes": [
            {
                "answer": 0,
                "box": 0,
                "field": "boundingBoxes[0]",
                "label": "unicorn",
                "reason": "label 'unicorn' is not in the class list",
            }
        ],
        "outcome": "skipped",
        "reason": "no box left to train on",
    }
    assert report[gone]["outcome"] == "error"
    assert "does not exist" in report[gone]["reason"]


def test_a_rerun_rewrites_the_day_files(
    s3: Any, a2i: Stubber, op: AugmentedManifestOperator, context: dict[str, Any]
) -> None:
    name = loop_name("cat.jpg")
    put_lines(s3, HUMAN_LOOPS, [loop_line("cat.jpg")])
    put_predictions(s3, {"cat.jpg": (640, 480)})
    answer = [{"label": "dog", "left": 10, "top": 20, "width": 30, "height": 40}]
    put(s3, output_key(name), json.dumps(a2i_output("cat.jpg", answer)))
    for _ in range(2):
        a2i.add_response("describe_human_loop", completed(name), {"HumanLoopName": name})

    first = op.execute(context)
    manifest = read_text(s3, MANIFEST)
    second = op.execute(context)

    assert first == second
    assert first["converted"] == 1
    assert read_text(s3, MANIFEST) == manifest
    assert len(read_lines(s3, MANIFEST)) == 1
    assert len(read_lines(s3, REPORT)) == 1
    assert read_lines(s3, MANIFEST)[0]["a2i-retraining"]["annotations"] == [
        {"class_id": 11, "left": 10, "top": 20, "width": 30, "height": 40}
    ]


def test_no_loops_file_means_empty_outputs(
    s3: Any, a2i: Stubber, op: AugmentedManifestOperator, context: dict[str, Any]
) -> None:
    result = op.execute(context)

    assert (result["converted"], result["skipped"], result["errored"]) == (0, 0, 0)
    assert exists(s3, MANIFEST)
    assert read_text(s3, MANIFEST) == ""
    assert read_text(s3, REPORT) == ""


def test_when_every_loop_errors_the_task_fails_with_the_report(
    s3: Any, a2i: Stubber, op: AugmentedManifestOperator, context: dict[str, Any]
) -> None:
    names = [loop_name(image) for image in ("a.jpg", "b.jpg")]
    put_lines(s3, HUMAN_LOOPS, [loop_line("a.jpg"), loop_line("b.jpg")])
    for name in names:  # e.g. the connection's identity may not call DescribeHumanLoop
        a2i.add_client_error(
            "describe_human_loop",
            service_error_code="AccessDeniedException",
            service_message="not authorized",
            http_status_code=403,
            expected_params={"HumanLoopName": name},
        )

    with pytest.raises(AirflowException, match="No loop output could be read"):
        op.execute(context)

    assert {line["outcome"] for line in read_lines(s3, REPORT)} == {"error"}


def test_dropped_boxes_are_reported_per_loop_and_counted(
    s3: Any, a2i: Stubber, op: AugmentedManifestOperator, context: dict[str, Any]
) -> None:
    images = ["a.jpg", "b.jpg"]
    put_lines(s3, HUMAN_LOOPS, [loop_line(image) for image in images])
    put_predictions(s3, dict.fromkeys(images, (640, 480)))
    a, b = (loop_name(image) for image in images)
    cat = {"label": "cat", "left": 10, "top": 10, "width": 100, "height": 100}
    outside = {"label": "dog", "left": 700, "top": 10, "width": 50, "height": 50}
    flat = {"label": "cat", "left": 10, "top": 10, "width": 0, "height": 50}
    # a: three workers agree on the cat; the third also drew "kitty" there and a box outside the image
    put(
        s3,
        output_key(a),
        json.dumps(a2i_output("a.jpg", [cat], [cat], [{**cat, "label": "kitty"}, cat, outside])),
    )
    a2i.add_response("describe_human_loop", completed(a), {"HumanLoopName": a})
    put(s3, output_key(b), json.dumps(a2i_output("b.jpg", [flat, cat])))
    a2i.add_response("describe_human_loop", completed(b), {"HumanLoopName": b})

    result = op.execute(context)

    assert (result["converted"], result["dropped_boxes"]) == (2, 3)
    report = {line["name"]: line for line in read_lines(s3, REPORT)}
    assert report[a]["outcome"] == "converted"
    assert report[a]["dropped_boxes"] == [
        {
            "answer": 2,
            "box": 0,
            "field": "boundingBoxes[0]",
            "label": "kitty",
            "reason": "label 'kitty' is not in the class list",
        },
        {
            "answer": 2,
            "box": 2,
            "field": "boundingBoxes[2]",
            "label": "dog",
            "reason": "no area inside the 640x480 image",
        },
    ]
    assert report[b]["dropped_boxes"] == [
        {
            "answer": 0,
            "box": 0,
            "field": "boundingBoxes[0]",
            "label": "cat",
            "reason": "size 0x50 is not positive",
        }
    ]
    manifest = {line["source-ref"]: line for line in read_lines(s3, MANIFEST)}
    # one worker's unknown label does not void the others' agreement: the cat is agreed by all three
    assert manifest[source("a.jpg")]["a2i-retraining"]["annotations"] == [
        {"class_id": 7, "left": 10, "top": 10, "width": 100, "height": 100}
    ]
    assert manifest[source("a.jpg")]["a2i-retraining-metadata"]["objects"] == [{"confidence": 1}]


def test_a_non_finite_value_is_a_conversion_error_naming_the_field(
    s3: Any, a2i: Stubber, op: AugmentedManifestOperator, context: dict[str, Any]
) -> None:
    images = ["inf.jpg", "ok.jpg"]
    put_lines(s3, HUMAN_LOOPS, [loop_line(image) for image in images])
    put_predictions(s3, dict.fromkeys(images, (640, 480)))
    bad, ok = (loop_name(image) for image in images)
    text = json.dumps(a2i_output("inf.jpg", [{"label": "cat", "left": 1, "top": 2, "width": 3, "height": 4}]))
    put(s3, output_key(bad), text.replace('"width": 3', '"width": Infinity'))  # as a buggy client sends it
    a2i.add_response("describe_human_loop", completed(bad), {"HumanLoopName": bad})
    cat = [{"label": "cat", "left": 1, "top": 2, "width": 3, "height": 4}]
    put(s3, output_key(ok), json.dumps(a2i_output("ok.jpg", cat)))
    a2i.add_response("describe_human_loop", completed(ok), {"HumanLoopName": ok})

    result = op.execute(context)

    assert (result["converted"], result["errored"]) == (1, 1)
    report = {line["name"]: line for line in read_lines(s3, REPORT)}
    assert report[bad]["outcome"] == "error"
    assert report[bad]["reason"] == (
        f"conversion: human loop {bad!r}, answer 0: boundingBoxes[0].width is not a finite number: inf"
    )


def test_a_loop_whose_reviewers_saw_another_image_size_than_predicted_is_an_error(
    s3: Any, a2i: Stubber, op: AugmentedManifestOperator, context: dict[str, Any]
) -> None:
    images = ["resized.jpg", "unpredicted.jpg", "ok.jpg"]
    put_lines(s3, HUMAN_LOOPS, [loop_line(image) for image in images])
    put_predictions(s3, {"resized.jpg": (1280, 960), "ok.jpg": (640, 480)})
    resized, unpredicted, ok = (loop_name(image) for image in images)
    cat = [{"label": "cat", "left": 10, "top": 10, "width": 100, "height": 100}]
    for name, image in zip((resized, unpredicted, ok), images, strict=True):
        put(s3, output_key(name), json.dumps(a2i_output(image, cat, width=640, height=480)))
        a2i.add_response("describe_human_loop", completed(name), {"HumanLoopName": name})

    result = op.execute(context)

    assert (result["converted"], result["errored"]) == (1, 2)
    assert [line["source-ref"] for line in read_lines(s3, MANIFEST)] == [source("ok.jpg")]
    report = {line["name"]: line for line in read_lines(s3, REPORT)}
    assert report[resized]["outcome"] == "error"
    assert report[resized]["reason"] == (
        f"conversion: human loop {resized!r}, answer 0: the reviewer saw a 640x480 image, "
        f"but {source('resized.jpg')} is 1280x960; the loop's boxes are not used"
    )
    assert report[unpredicted]["outcome"] == "error"
    assert "is not among the day's predicted images" in report[unpredicted]["reason"]


def test_an_output_outside_the_a2i_output_prefix_is_refused(
    s3: Any, a2i: Stubber, op: AugmentedManifestOperator, context: dict[str, Any]
) -> None:
    images = ["elsewhere.jpg", "runs.jpg", "ok.jpg"]
    put_lines(s3, HUMAN_LOOPS, [loop_line(image) for image in images])
    put_predictions(s3, dict.fromkeys(images, (640, 480)))
    elsewhere, in_runs, ok = (loop_name(image) for image in images)
    cat = [{"label": "cat", "left": 10, "top": 10, "width": 100, "height": 100}]
    s3.create_bucket(Bucket="other-bucket")
    foreign = f"s3://other-bucket/{output_key(elsewhere)}"
    s3.put_object(
        Bucket="other-bucket", Key=output_key(elsewhere), Body=json.dumps(a2i_output("elsewhere.jpg", cat))
    )
    a2i.add_response("describe_human_loop", completed(elsewhere, foreign), {"HumanLoopName": elsewhere})
    outside_prefix = f"s3://my-bucket/{RUNS}output.json"
    put(s3, f"{RUNS}output.json", json.dumps(a2i_output("runs.jpg", cat)))
    a2i.add_response("describe_human_loop", completed(in_runs, outside_prefix), {"HumanLoopName": in_runs})
    put(s3, output_key(ok), json.dumps(a2i_output("ok.jpg", cat)))
    a2i.add_response("describe_human_loop", completed(ok), {"HumanLoopName": ok})

    result = op.execute(context)

    assert (result["converted"], result["errored"]) == (1, 2)
    report = {line["name"]: line for line in read_lines(s3, REPORT)}
    assert report[elsewhere]["outcome"] == "error"
    assert report[elsewhere]["reason"].startswith(
        f"ConfinementError: the output of human loop {elsewhere!r} {foreign!r} is outside "
        f"s3://my-bucket/{PREFIX}/a2i-output/"
    )
    assert report[in_runs]["outcome"] == "error"
    assert report[in_runs]["reason"].startswith("ConfinementError: ")
    assert [line["source-ref"] for line in read_lines(s3, MANIFEST)] == [source("ok.jpg")]


def test_a_source_ref_outside_the_loops_root_is_refused(
    s3: Any, a2i: Stubber, op: AugmentedManifestOperator, context: dict[str, Any]
) -> None:
    images = ["foreign.jpg", "ok.jpg"]
    foreign_image = "s3://other-bucket/photos/foreign.jpg"
    # the run's own record names the foreign image (a tampered human-loops.jsonl)
    put_lines(s3, HUMAN_LOOPS, [{**loop_line("foreign.jpg"), "source": foreign_image}, loop_line("ok.jpg")])
    put_predictions(s3, {foreign_image: (640, 480), "ok.jpg": (640, 480)})
    foreign, ok = (loop_name(image) for image in images)
    cat = [{"label": "cat", "left": 10, "top": 10, "width": 100, "height": 100}]
    document = a2i_output("foreign.jpg", cat)
    document["inputContent"]["taskObject"] = foreign_image
    put(s3, output_key(foreign), json.dumps(document))
    a2i.add_response("describe_human_loop", completed(foreign), {"HumanLoopName": foreign})
    put(s3, output_key(ok), json.dumps(a2i_output("ok.jpg", cat)))
    a2i.add_response("describe_human_loop", completed(ok), {"HumanLoopName": ok})

    result = op.execute(context)

    assert (result["converted"], result["errored"]) == (1, 1)
    report = {line["name"]: line for line in read_lines(s3, REPORT)}
    assert report[foreign]["outcome"] == "error"
    assert report[foreign]["reason"].startswith(
        f"ConfinementError: source-ref {foreign_image!r} is outside s3://my-bucket/{PREFIX}/"
    )
    assert [line["source-ref"] for line in read_lines(s3, MANIFEST)] == [source("ok.jpg")]


def test_an_answer_for_another_image_of_the_day_than_the_run_recorded_is_an_error_naming_both(
    s3: Any, a2i: Stubber, op: AugmentedManifestOperator, context: dict[str, Any]
) -> None:
    """Issue 15.7: each answer's image comes from the run's own record, never from what it claims."""
    images = ["a.jpg", "b.jpg"]
    put_lines(s3, HUMAN_LOOPS, [loop_line(image) for image in images])
    put_predictions(s3, dict.fromkeys(images, (640, 480)))
    cat = [{"label": "cat", "left": 10, "top": 10, "width": 100, "height": 100}]
    document = a2i_output("a.jpg", cat)
    document["inputContent"]["taskObject"] = source("b.jpg")  # claims the day's other image
    for image, body in (("a.jpg", document), ("b.jpg", a2i_output("b.jpg", cat))):
        put(s3, output_key(loop_name(image)), json.dumps(body))
        a2i.add_response(
            "describe_human_loop", completed(loop_name(image)), {"HumanLoopName": loop_name(image)}
        )

    result = op.execute(context)

    assert (result["converted"], result["errored"]) == (1, 1)
    entry = {line["name"]: line for line in read_lines(s3, REPORT)}[loop_name("a.jpg")]
    assert entry["reason"] == (
        f"conversion: human loop {loop_name('a.jpg')!r} answers for {source('b.jpg')!r}, but the run "
        f"recorded {loop_name('a.jpg')!r} for {source('a.jpg')}: its answers are not used"
    )
    # one line, for b.jpg from its own loop: none from a.jpg's answer
    assert [line["source-ref"] for line in read_lines(s3, MANIFEST)] == [source("b.jpg")]


def test_with_several_workers_the_result_says_how_much_they_agreed(s3: Any, context: dict[str, Any]) -> None:
    """Issue 18.2: the day's record shows reviewer agreement where task_count > 1."""
    op = AugmentedManifestOperator(
        task_id="augmented_manifest", concurrency=1, **operator_kwargs(task_count=3)
    )
    put_lines(s3, HUMAN_LOOPS, [loop_line("three.jpg")])
    put_predictions(s3, {"three.jpg": (640, 480)})
    cat = {"label": "cat", "left": 64, "top": 120, "width": 288, "height": 240}
    dog = {"label": "dog", "left": 400, "top": 300, "width": 100, "height": 100}
    # all three see the cat, two of three the dog
    put(
        s3,
        output_key(loop_name("three.jpg")),
        json.dumps(a2i_output("three.jpg", [cat, dog], [cat, dog], [cat])),
    )
    with Stubber(op.aws_hook(A2IRuntimeHook).conn) as a2i:
        name = loop_name("three.jpg")
        a2i.add_response("describe_human_loop", completed(name), {"HumanLoopName": name})
        result = op.execute(context)

    assert result["converted"] == 1
    assert result["agreement"] == pytest.approx((1 + 2 / 3) / 2, abs=1e-4)
