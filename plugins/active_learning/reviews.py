"""The review step, whichever backend reviews: what is asked, how far it got, what came back.

A review request is an image, the class list and the model's pixel boxes; a review's progress is
the status count of a run's reviews; a reviewer's answer is pixel boxes per worker. A2I and Label
Studio are adapters onto these (``manifest.py`` turns answers into manifest lines, once for both).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

from active_learning.detections import Detection, to_pixel_boxes

TERMINAL_STATUSES = frozenset({"Completed", "Failed", "Stopped"})


@dataclass(frozen=True)
class ReviewBackendEntry:
    """A review backend as the settings know it: where its class is (imported only where a review
    task runs, never at DAG parse) and the settings it requires.

    :param classpath: ``module.Class`` of its :class:`active_learning.review_backends.base.ReviewBackend`.
    :param required_settings: ``LoopSettings`` fields that must be set when it reviews.
    """

    classpath: str
    required_settings: tuple[str, ...] = ()


# The review backends, by the name the review_backend setting gives.
REVIEW_BACKENDS: dict[str, ReviewBackendEntry] = {
    "a2i": ReviewBackendEntry("active_learning.review_backends.a2i.A2IReview", ("workteam_arn",)),
    "label_studio": ReviewBackendEntry("active_learning.review_backends.label_studio.LabelStudioReview"),
}


def register_review_backend(name: str, classpath: str, required_settings: tuple[str, ...] = ()) -> None:
    """Add a review backend (a plugin's, a test's), chosen by ``review_backend=<name>``."""
    REVIEW_BACKENDS[name] = ReviewBackendEntry(classpath, required_settings)


@dataclass(frozen=True)
class ReviewProgress:
    """Status counts of a run's loops and the reasons of the failed or stopped ones."""

    expected: int
    counts: dict[str, int] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_summaries(cls, summaries: Iterable[Mapping[str, Any]], names: Set[str]) -> ReviewProgress:
        """Count the summaries of the run's own loops (``names``); other loops in the listing do not count."""
        return cls.from_statuses(
            (
                (
                    summary.get("HumanLoopName", ""),
                    summary.get("HumanLoopStatus", "Unknown"),
                    summary.get("FailureReason"),
                )
                for summary in summaries
            ),
            names,
        )

    @classmethod
    def from_statuses(
        cls, statuses: Iterable[tuple[str, str, str | None]], names: Set[str]
    ) -> ReviewProgress:
        """Count ``(name, status, failure reason)`` of the run's own reviews (``names``), in A2I's
        status words (InProgress, Completed, Failed, Stopped); other reviews do not count."""
        counts: Counter[str] = Counter()
        failures: dict[str, str] = {}
        for name, status, reason in statuses:
            if name not in names:
                continue
            counts[status] += 1
            if status in ("Failed", "Stopped"):
                failures[name] = reason or status
        return cls(len(names), dict(counts), failures)

    @property
    def seen(self) -> int:
        return sum(self.counts.values())

    @property
    def completed(self) -> int:
        return self.counts.get("Completed", 0)

    @property
    def terminal(self) -> int:
        return sum(n for status, n in self.counts.items() if status in TERMINAL_STATUSES)

    def is_done(self, min_completed_fraction: float = 1.0) -> bool:
        """All loops are terminal, or enough of them completed to go on.

        :param min_completed_fraction: share of the expected loops whose completion is enough;
            1.0 waits until every loop is terminal.
        """
        if self.expected == 0:
            return True
        all_terminal = self.seen >= self.expected and self.terminal >= self.expected
        return all_terminal or self.completed >= min_completed_fraction * self.expected

    def to_dict(self, max_failures: int = 100) -> dict[str, Any]:
        """A small serializable form (trigger events land in the metadata database): counts are
        complete, failure reasons are kept for the first ``max_failures`` loops by name."""
        failures = dict(sorted(self.failures.items())[:max_failures])
        return {"expected": self.expected, "counts": self.counts, "failures": failures}

    def describe(self) -> str:
        counts = ", ".join(f"{status} {n}" for status, n in sorted(self.counts.items())) or "none seen"
        return f"{self.terminal}/{self.expected} loops terminal ({counts})"


def loop_names(records: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """The names of a run's loops, from the lines of its ``human-loops.jsonl``."""
    return frozenset(record["name"] for record in records)


@dataclass(frozen=True)
class ReviewRequest:
    """One image to review: where it is, its size, the class list and the model's pixel boxes.

    :param name: the review's deterministic name (run day + image URI), its identity in the backend.
    :param boxes: ``{label, left, top, width, height}`` pixel boxes, the model's most confident first.
    :param reason: why the image was routed to review.
    """

    name: str
    source: str
    width: int
    height: int
    class_names: tuple[str, ...]
    boxes: tuple[dict[str, Any], ...]
    reason: str = ""

    @classmethod
    def from_prediction(
        cls,
        name: str,
        record: Mapping[str, Any],
        class_names: Sequence[str],
        min_score: float,
        max_boxes: int,
    ) -> ReviewRequest:
        """The request for one line of ``predictions.jsonl``: boxes scoring below ``min_score`` and
        beyond the ``max_boxes`` first are not shown."""
        detections = [Detection.from_list(row) for row in record["detections"]][:max_boxes]
        boxes = to_pixel_boxes(detections, record["width"], record["height"], class_names, min_score)
        return cls(
            name,
            record["source"],
            record["width"],
            record["height"],
            tuple(class_names),
            tuple(boxes),
            record.get("reason", ""),
        )


@dataclass(frozen=True)
class ReviewAnswer:
    """One worker's answer: pixel boxes ``{label, left, top, width, height}`` on the image as they saw it.

    Values are as the backend gave them; ``manifest.convert_review`` validates them.

    :param boxes_field: the list of boxes in the backend's document (for messages): its entry
        ``n`` is ``<boxes_field>[n]``.
    :param box_numbers: each box's entry in that list, when the adapter left entries out (not boxes).
    :param problems: entries the adapter could already not use, as ``(entry, label, reason)``.
    """

    image_width: Any
    image_height: Any
    boxes: tuple[Any, ...]
    submission_time: str
    boxes_field: str = "boxes"
    box_numbers: tuple[int, ...] = ()
    size_field: str = "image size"
    problems: tuple[tuple[int, Any, str], ...] = ()

    def box_number(self, index: int) -> int:
        """The entry of the ``index``-th box in the backend's list."""
        return self.box_numbers[index] if index < len(self.box_numbers) else index


@dataclass(frozen=True)
class ReviewedImage:
    """What came back for one review: the image and every worker's answer.

    :param kind: what the backend calls a review (``human loop``, ``Label Studio task``), for messages.
    :param job_name: the manifest metadata's ``job-name`` (``a2i/<loop>``, ``label-studio/<task>``).
    """

    kind: str
    name: str
    source_ref: str
    answers: tuple[ReviewAnswer, ...]
    job_name: str


def label_studio_status(task: Mapping[str, Any], required_answers: int) -> tuple[str, str | None]:
    """A Label Studio task's status in the review words: ``Stopped`` when marked at a timeout,
    ``Completed`` with ``required_answers`` submitted (not skipped) annotations, else ``InProgress``."""
    stopped = (task.get("meta") or {}).get("stopped")
    if stopped:
        return "Stopped", str(stopped)
    submitted = int(task.get("total_annotations") or 0) - int(task.get("cancelled_annotations") or 0)
    return ("Completed" if submitted >= required_answers else "InProgress"), None
