"""The Amazon A2I runtime (REST-JSON) with human review stand-ins.

Reviewers: ``reference`` answers each loop after a delay with the image's reference boxes (from the
S3 object's ``reference-boxes`` metadata), optionally with noise, abandoned loops and several
workers; ``manual`` leaves loops waiting until a person answers them through ``/_emulator``.
"""

from __future__ import annotations

import base64
import json
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from emulator.protocol import AwsError, arn, check_name, iso, now

MAX_INPUT_CHARS = 3_145_728


@dataclass
class HumanLoop:
    name: str
    arn: str
    flow_definition_arn: str
    input_content: str
    created: datetime = field(default_factory=now)
    status: str = "InProgress"
    failure_reason: str | None = None
    failure_code: str | None = None
    output_uri: str | None = None

    def summary(self) -> dict[str, Any]:
        summary = {
            "HumanLoopName": self.name,
            "HumanLoopStatus": self.status,
            "CreationTime": iso(self.created),
            "FlowDefinitionArn": self.flow_definition_arn,
        }
        if self.failure_reason:
            summary["FailureReason"] = self.failure_reason
        return summary


@dataclass(frozen=True)
class ReviewerConfig:
    """How the stand-in reviewers behave.

    :param mode: ``reference`` (automatic) or ``manual`` (a person answers).
    :param delay: seconds before a reference answer.
    :param noise: box jitter as a share of the box size (0 = exact reference boxes).
    :param abandon_fraction: share of loops nobody answers (they fail as expired).
    :param workers: answers per loop; 0 uses the flow definition's TaskCount.
    :param seed: random seed of noise and abandonment.
    """

    mode: str = "reference"
    delay: float = 1.0
    noise: float = 0.0
    abandon_fraction: float = 0.0
    workers: int = 0
    seed: int = 0


class A2IRuntime:
    """StartHumanLoop, DescribeHumanLoop, ListHumanLoops, StopHumanLoop, DeleteHumanLoop.

    :param reviewer: how the stand-in reviewers behave.
    :param later: runs a state change after a delay, in the background.
    :param flow_definition: a flow definition by ARN (``None`` when there is none).
    :param reference_of: an image's reference boxes and size, by S3 URI.
    :param put_object: writes an object (the loop's ``output.json``), by S3 URI.
    """

    def __init__(
        self,
        reviewer: ReviewerConfig,
        later: Callable[..., None],
        flow_definition: Callable[[str], dict[str, Any] | None],
        reference_of: Callable[[str], tuple[list[dict[str, Any]], int, int]],
        put_object: Callable[[str, bytes], None],
    ) -> None:
        self.reviewer = reviewer
        self.later = later
        self.flow_definition = flow_definition
        self.reference_of = reference_of
        self.put_object = put_object
        self.random = random.Random(reviewer.seed)
        self.lock = threading.Lock()
        self.loops: dict[str, HumanLoop] = {}
        # loops the reference reviewers leave unanswered until released (a late day, on purpose)
        self.held: Callable[[str], bool] = lambda name: False
        self.waiting: list[tuple[HumanLoop, dict[str, Any]]] = []

    def handle(
        self, method: str, path: str, query: dict[str, str], body: bytes, region: str
    ) -> tuple[int, dict]:
        if method == "POST" and path == "/human-loops":
            return 200, self.start(json.loads(body or b"{}"), region)
        if method == "GET" and path == "/human-loops":
            return 200, self.list(query)
        if method == "POST" and path == "/human-loops/stop":
            return 200, self.stop(json.loads(body or b"{}").get("HumanLoopName", ""))
        name = unquote(path.removeprefix("/human-loops/"))
        if method == "GET":
            return 200, self.describe(name)
        if method == "DELETE":
            return 200, self.delete(name)
        raise AwsError("UnknownOperationException", f"{method} {path} is not an A2I runtime operation", 404)

    def _get(self, name: str) -> HumanLoop:
        loop = self.loops.get(name)
        if loop is None:
            raise AwsError("ResourceNotFoundException", f"Human loop {name} was not found", 404)
        return loop

    def start(self, body: dict[str, Any], region: str) -> dict[str, Any]:
        name = check_name(body.get("HumanLoopName"), "humanLoopName")
        flow_arn = body.get("FlowDefinitionArn", "")
        content = (body.get("HumanLoopInput") or {}).get("InputContent", "")
        if not 1 <= len(content) <= MAX_INPUT_CHARS:
            raise AwsError("ValidationException", f"InputContent must have 1-{MAX_INPUT_CHARS} characters")
        try:
            json.loads(content)
        except json.JSONDecodeError as err:
            raise AwsError("ValidationException", f"InputContent is not valid JSON: {err}") from err
        flow = self.flow_definition(flow_arn)
        if flow is None or flow["FlowDefinitionStatus"] != "Active":
            raise AwsError(
                "ValidationException", f"Flow definition {flow_arn} does not exist or is not Active"
            )
        with self.lock:
            existing = self.loops.get(name)
            if existing is not None:
                if existing.flow_definition_arn == flow_arn and existing.input_content == content:
                    return {"HumanLoopArn": existing.arn}  # a repeated start with the same input
                raise AwsError(
                    "ConflictException",
                    f"A human loop named {name} already exists with different input data",
                    409,
                )
            loop = HumanLoop(name, arn(region, "human-loop", name), flow_arn, content)
            self.loops[name] = loop
        if self.reviewer.mode == "reference":
            self.later(self.reviewer.delay, self._review, loop, flow)
        return {"HumanLoopArn": loop.arn}

    def describe(self, name: str) -> dict[str, Any]:
        loop = self._get(name)
        described = {**loop.summary(), "HumanLoopArn": loop.arn}
        if loop.failure_code:
            described["FailureCode"] = loop.failure_code
        if loop.output_uri:
            described["HumanLoopOutput"] = {"OutputS3Uri": loop.output_uri}
        return described

    def list(self, query: dict[str, str]) -> dict[str, Any]:
        flow_arn = query.get("FlowDefinitionArn")
        if not flow_arn:
            raise AwsError("ValidationException", "FlowDefinitionArn is required")
        size = int(query.get("MaxResults", 100))
        if not 1 <= size <= 100:
            raise AwsError("ValidationException", "MaxResults must be between 1 and 100")
        after = _parse(query.get("CreationTimeAfter"))
        before = _parse(query.get("CreationTimeBefore"))
        loops = [
            loop
            for loop in self.loops.values()
            if loop.flow_definition_arn == flow_arn
            and (after is None or loop.created >= after)
            and (before is None or loop.created <= before)
        ]
        loops.sort(key=lambda loop: (loop.created, loop.name), reverse=query.get("SortOrder") == "Descending")
        start = int(base64.b64decode(query["NextToken"]).decode()) if query.get("NextToken") else 0
        result: dict[str, Any] = {
            "HumanLoopSummaries": [loop.summary() for loop in loops[start : start + size]]
        }
        if start + size < len(loops):
            result["NextToken"] = base64.b64encode(str(start + size).encode()).decode()
        return result

    def stop(self, name: str) -> dict[str, Any]:
        loop = self._get(name)
        if loop.status == "InProgress":
            loop.status = "Stopping"
            self.later(self.reviewer.delay, self._set_status, loop, "Stopping", "Stopped")
        return {}

    @staticmethod
    def _set_status(loop: HumanLoop, expected: str, status: str) -> None:
        if loop.status == expected:
            loop.status = status

    def delete(self, name: str) -> dict[str, Any]:
        loop = self._get(name)
        if loop.status == "InProgress":
            raise AwsError("ValidationException", f"Human loop {name} is InProgress: stop it first")
        with self.lock:
            del self.loops[name]
        return {}

    # Reviewers -----------------------------------------------------------------------------------
    def hold(self, names: Callable[[str], bool]) -> None:
        """Leave the loops whose names match unanswered (late reviewers) until :meth:`release`."""
        self.held = names

    def release(self) -> None:
        """Answer the held loops now, as the reference reviewers would have."""
        with self.lock:
            self.held = lambda name: False
            waiting, self.waiting = self.waiting, []
        for loop, flow in waiting:
            self._review(loop, flow)

    def _review(self, loop: HumanLoop, flow: dict[str, Any]) -> None:
        if loop.status != "InProgress":
            return
        with self.lock:
            if self.held(loop.name):
                self.waiting.append((loop, flow))
                return
        if self.random.random() < self.reviewer.abandon_fraction:
            # nobody takes the task: it stays InProgress until the flow definition's lifetime runs out
            lifetime = int(flow["HumanLoopConfig"].get("TaskAvailabilityLifetimeInSeconds", 864_000))
            self.later(max(lifetime - self.reviewer.delay, 0), self._expire, loop)
            return
        task = json.loads(loop.input_content)
        try:
            reference, width, height = self.reference_of(task["taskObject"])
        except Exception as err:
            loop.status, loop.failure_reason = "Failed", f"The task object could not be read: {err}"
            return
        workers = self.reviewer.workers or int(flow["HumanLoopConfig"].get("TaskCount", 1))
        answers = [self._answer(reference, width, height, worker) for worker in range(workers)]
        self.complete(loop.name, answers)

    @staticmethod
    def _expire(loop: HumanLoop) -> None:
        if loop.status == "InProgress":
            loop.status, loop.failure_code = "Failed", "TaskExpired"
            loop.failure_reason = "No worker completed the task within TaskAvailabilityLifetimeInSeconds"

    def _answer(self, reference: list[dict], width: int, height: int, worker: int) -> dict[str, Any]:
        boxes = []
        for box in reference:
            jitter = self.reviewer.noise
            dx = round(self.random.gauss(0, jitter) * box["width"]) if jitter else 0
            dy = round(self.random.gauss(0, jitter) * box["height"]) if jitter else 0
            boxes.append(
                {
                    **{k: box[k] for k in ("label", "width", "height")},
                    "left": box["left"] + dx,
                    "top": box["top"] + dy,
                }
            )
        return {
            "answerContent": {
                "annotatedResult": {
                    "boundingBoxes": boxes,
                    "inputImageProperties": {"width": width, "height": height},
                }
            },
            "submissionTime": iso(now()),
            "workerId": f"reference-reviewer-{worker}",
            "workerMetadata": {
                "identityData": {"identityProviderType": "Cognito", "sub": f"worker-{worker}"}
            },
        }

    def complete(self, name: str, answers: list[dict[str, Any]]) -> str:
        """Write the loop's output.json where A2I writes it and mark the loop Completed."""
        loop = self._get(name)
        if loop.status != "InProgress":
            raise AwsError("ValidationException", f"Human loop {name} is {loop.status}, not InProgress")
        flow = self.flow_definition(loop.flow_definition_arn)
        if flow is None:
            raise AwsError("ValidationException", f"Flow definition {loop.flow_definition_arn} is gone")
        finished = now()
        output_path = flow["OutputConfig"]["S3OutputPath"].rstrip("/")
        uri = f"{output_path}/{flow['FlowDefinitionName']}/{finished:%Y/%m/%d/%H/%M/%S}/{name}/output.json"
        document = {
            "flowDefinitionArn": loop.flow_definition_arn,
            "humanLoopName": name,
            "inputContent": json.loads(loop.input_content),
            "humanAnswers": answers,
        }
        self.put_object(uri, json.dumps(document).encode())
        loop.output_uri, loop.status = uri, "Completed"
        return uri

    def pending(self) -> list[dict[str, Any]]:
        return [
            {"name": loop.name, "input": json.loads(loop.input_content), "created": iso(loop.created)}
            for loop in self.loops.values()
            if loop.status == "InProgress"
        ]


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
