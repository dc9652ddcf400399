"""One backend-neutral suite of the review step, run against each backend: A2I on the local AWS
(its reference reviewer answers), Label Studio on a real server (a scripted annotator answers
through the API). The same tasks, the same files, the same manifest lines."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.integration.reviews import ReviewStep, connect, put_day, read_lines, settings
from tools.label_studio import LabelStudioClient, ScriptedAnnotator
from world import REFERENCE_METADATA
from world.scenes import DEMO_CLASSES

BACKENDS = ["a2i", "label_studio"]
# its Label Studio cases use the session's server: on its worker under pytest -n (tests/conftest.py)
pytestmark = pytest.mark.xdist_group("label_studio")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, emulator, aws, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The backend, connected, with its reviewers answering."""
    if request.param == "a2i":
        connect(monkeypatch, emulator, None)
        yield "a2i"
        return
    label_studio = request.getfixturevalue("label_studio")
    connect(monkeypatch, emulator, label_studio)
    annotator = ScriptedAnnotator(
        LabelStudioClient(label_studio.url, label_studio.token), aws("s3"), REFERENCE_METADATA
    )
    annotator.start()
    yield "label_studio"
    annotator.stop()


def day_for(backend: str, test: int) -> str:
    return f"2026-0{1 + BACKENDS.index(backend)}-{test:02d}"


def test_every_routed_image_is_reviewed_and_becomes_one_manifest_line(
    backend: str, aws: Callable[[str], Any]
) -> None:
    day = day_for(backend, 1)
    records = put_day(aws, day, 4)
    step = ReviewStep(settings(backend), day)

    started = step.start(step.set_up())
    assert started["loops"] == 4
    loops = read_lines(aws, day, "human-loops.jsonl")
    assert sorted(loop["source"] for loop in loops) == sorted(record["source"] for record in records)

    waited = step.wait(started)
    assert waited["completed"] == 4
    assert not waited["timed_out"]

    result = step.manifest()
    assert result["converted"] == 4
    lines = read_lines(aws, day, "augmented.manifest")
    assert sorted(line["source-ref"] for line in lines) == sorted(loop["source"] for loop in loops)
    for line in lines:
        assert line["a2i-retraining-metadata"]["class-map"] == {str(i): c for i, c in enumerate(DEMO_CLASSES)}
        assert line["a2i-retraining"]["annotations"]
    report = read_lines(aws, day, "manifest-report.jsonl")
    assert {entry["outcome"] for entry in report} == {"converted"}


def test_a_rerun_of_the_day_adopts_what_the_first_run_started(
    backend: str, aws: Callable[[str], Any]
) -> None:
    day = day_for(backend, 2)
    put_day(aws, day, 3, seed=5)
    step = ReviewStep(settings(backend), day)
    workflow = step.set_up()
    first = step.start(workflow)
    assert step.set_up() == workflow  # the set-up is found again, not made twice
    again = step.start(workflow)
    assert again["loops"] == first["loops"] == 3
    assert read_lines(aws, day, "human-loops.jsonl")[0]["name"]
    assert not any(loop["started"] for loop in read_lines(aws, day, "human-loops.jsonl"))


def test_a_day_with_nothing_routed_waits_for_nothing(backend: str, aws: Callable[[str], Any]) -> None:
    day = day_for(backend, 3)
    aws("s3").put_object(
        Bucket="integration-bucket", Key=f"active-learning/runs/{day}/predictions.jsonl", Body=b""
    )
    step = ReviewStep(settings(backend), day)
    started = step.start(step.set_up())
    assert started["loops"] == 0
    assert step.wait(started)["expected"] == 0
    assert step.manifest()["converted"] == 0
