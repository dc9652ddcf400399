"""Routing policy: which images of a day go to human review, and why.

The default reproduces the seed: review an image when its top score over all detections is below
the threshold (exactly the threshold is confident). Beyond the seed, an image with no detection is
reviewed (the seed crashed on it), a day's reviews can be capped (keeping the most uncertain), and a
reproducible random share of confident images is sent to review as an audit sample.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from active_learning.detections import Detection, top_score

# Reasons are stable strings: they are written to predictions.jsonl and counted in reports.
REASON_NO_DETECTIONS = "no-detections"
REASON_LOW_CONFIDENCE = "low-confidence"
REASON_CONFIDENT = "confident"
REASON_AUDIT = "audit-sample"
REASON_OVER_BUDGET = "over-review-budget"


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether an image goes to human review, with the reason and the score behind it."""

    review: bool
    reason: str
    top_score: float | None = None

    @property
    def uncertainty_rank(self) -> float:
        """Lower is more uncertain: an image with no detection ranks first."""
        return -1.0 if self.top_score is None else self.top_score


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    """Decides which images go to human review.

    :param threshold: review when the top score is below this (0..1); the seed used 0.5.
    :param max_reviews: at most this many reviews per run (``None``: no cap); the most uncertain are kept.
    :param audit_fraction: share (0..1) of confident images also sent to review, chosen at random
        but reproducibly for a given run key and image.
    """

    threshold: float = 0.5
    max_reviews: int | None = None
    audit_fraction: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be within 0..1, got {self.threshold!r}")
        if self.max_reviews is not None and self.max_reviews < 0:
            raise ValueError(f"max_reviews must be >= 0 or None, got {self.max_reviews!r}")
        if not 0.0 <= self.audit_fraction <= 1.0:
            raise ValueError(f"audit_fraction must be within 0..1, got {self.audit_fraction!r}")

    def decide(self, detections: Iterable[Detection]) -> Decision:
        """The decision for one image on its own (before the day's cap and audit sample)."""
        score = top_score(detections)
        if score is None:
            return Decision(True, REASON_NO_DETECTIONS, None)
        if score < self.threshold:
            return Decision(True, REASON_LOW_CONFIDENCE, score)
        return Decision(False, REASON_CONFIDENT, score)

    def in_audit_sample(self, run_key: str, image_key: str) -> bool:
        """Whether a confident image is drawn for audit: a hash, so the same run draws the same images."""
        if self.audit_fraction <= 0.0:
            return False
        digest = hashlib.sha256(f"{run_key}\0{image_key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.audit_fraction

    def with_audit(self, decision: Decision, run_key: str, image_key: str) -> Decision:
        """A confident image drawn for the audit sample becomes a review (reason ``audit-sample``)."""
        if not decision.review and self.in_audit_sample(run_key, image_key):
            return Decision(True, REASON_AUDIT, decision.top_score)
        return decision

    def decide_day(self, decisions: Mapping[str, Decision], run_key: str) -> dict[str, Decision]:
        """Apply the day-wide rules to per-image decisions keyed by image.

        Confident images drawn for audit become reviews; then, when there are more reviews than
        ``max_reviews``, the most uncertain are kept (audit samples last) and the others are
        marked ``over-review-budget``. The result does not depend on the mapping's order.
        Streaming callers use :meth:`with_audit` and :class:`ReviewBudget` directly.
        """
        day = {key: self.with_audit(decision, run_key, key) for key, decision in decisions.items()}
        budget = ReviewBudget(self.max_reviews)
        for key, decision in day.items():
            budget.offer(key, decision)
        return {key: budget.final(key, decision) for key, decision in day.items()}


@dataclass(frozen=True, slots=True)
class _Evictable:
    """Heap entry ordered so that the review to give up first is on top of a min-heap."""

    priority: tuple[bool, float, str]

    def __lt__(self, other: _Evictable) -> bool:
        return self.priority > other.priority


class ReviewBudget:
    """The ``limit`` reviews to keep out of a stream: memory grows with the limit, not the stream.

    Priority: uncertainty reviews before audit samples, then the lowest top score (no detection
    first), then the image key, so the outcome does not depend on the stream's order.
    """

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._heap: list[_Evictable] = []
        self._kept: set[str] | None = None

    def __len__(self) -> int:
        """Reviews held so far (never more than the limit)."""
        return len(self._heap)

    def offer(self, key: str, decision: Decision) -> None:
        if not decision.review or self.limit is None:
            return
        self._kept = None
        heapq.heappush(
            self._heap, _Evictable((decision.reason == REASON_AUDIT, decision.uncertainty_rank, key))
        )
        if len(self._heap) > self.limit:
            heapq.heappop(self._heap)

    def final(self, key: str, decision: Decision) -> Decision:
        """The decision once every review was offered: kept, or marked ``over-review-budget``."""
        if not decision.review or self.limit is None:
            return decision
        if self._kept is None:
            self._kept = {entry.priority[2] for entry in self._heap}
        if key in self._kept:
            return decision
        return replace(decision, review=False, reason=REASON_OVER_BUDGET)
